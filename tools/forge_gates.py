#!/usr/bin/env python3
"""The Solidity gates of CI besides Slither: the forge campaign, the coverage gate and solhint.

    python3 tools/forge_gates.py campaign   # forge test: invariant campaign + fuzz tests (profile fuzz)
    python3 tools/forge_gates.py coverage   # forge coverage of contracts/*.sol, >= 95 % lines and branches
    python3 tools/forge_gates.py solhint    # solhint over contracts/*.sol with .solhint.json, no warning

Each prints what it measured and exits non-zero when its gate fails; tests/contracts/test_forge.py
runs them under `bash tools/test.sh`. forge is npm's (node_modules/.bin) and compiles through
tools/solc (npm solc), offline. Extra arguments after the command go to forge (e.g. `--match-test`,
`--fuzz-seed`); the campaign's size lives in foundry.toml ([profile.fuzz.invariant] runs x depth).

The campaign gate fails on: any failing test; fewer handler calls in all than --min-calls; a
handler function that was never called, or that reverted (handlers catch every revert of the
contracts and record what they expected, so a handler revert can only be a handler bug or a
swallowed assertion: forge does not fail an invariant test on an assertion inside a handler).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).absolute().parent.parent  # not resolve(): a project copy may link tools/
FORGE = ROOT / "node_modules" / ".bin" / "forge"
SOLHINT = ROOT / "node_modules" / ".bin" / "solhint"
SOLC = ROOT / "tools" / "solc"
CONTRACTS = "contracts"
LCOV = ROOT / "build" / "forge-test" / "lcov.info"
REACH = (
    ROOT / "build" / "forge-test" / "reach.txt"
)  # written by InvariantTest.afterInvariant, one run after another
MIN_CALLS = 100_000
MIN_COVERAGE = 95.0
# Outcomes the campaign must reach at least once (tests/forge/invariant/World.sol names them): a campaign
# that never gets a model verified or a delivered purchase refunded has not tested those paths at all.
MUST_REACH = (
    "buy paid",
    "buy free",
    "delivered",
    "delivered by operator",
    "wrong buyer refused",
    "late purchase refunded",
    "disputed pending refunded",
    "delivered purchase refunded",
    "refund dropped a vote",
    "counted vote",
    "revenue released",
    "revenue released, verified",
    "withdrew",
    "reenterer withdrew",
    "validator reward claimed",
    "model transferred",
    "staked",
    "key requested",
    "key request renewed",
    "validator key delivered",
    "keyless commit refused",
    "committed",
    "committed again",
    "copied commitment",
    "revealed verified",
    "revealed metrics",
    "revealed disputed",
    "round undecided",
    "verified truthful",
    "disputed",
    "metrics disputed",
    "bond forfeited",
    "bonds returned",
    "expired request released",
    "unstake refused: open seats",
    "unstake requested",
    "unstaked",
    "treasury withdrew",
    "subscribed",
    # validation cycles: a later version validated in a cycle of its own
    "version published",
    "new cycle opened",
    "later version verdict",
    "old seat released",
    "delivered key replaced",
    # the campaign's ERC-20 (a model priced in it: sale, refund, release, withdrawal, subscription)
    "priced in token",
    "token buy paid",
    "token purchase refunded",
    "token revenue released",
    "token withdrew",
    "token subscribed",
    # Channels, in ETH and in the token
    "channel opened",
    "token channel opened",
    "channel topped up",
    "channel claimed",
    "channel claimed by operator",
    "channel reclaimed",
    "claimed channel reclaimed",
    "channel withdrew",
    "channel token withdrew",
)


def forge(profile: str, args: list[str], **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, FOUNDRY_PROFILE=profile)
    env["PATH"] = f"{FORGE.parent}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(
        [str(FORGE), *args, "--use", str(SOLC)], cwd=ROOT, env=env, text=True, **kw
    )


def reached() -> dict[str, int]:
    """How often each outcome happened over the campaign's runs (REACH lines: `name=count`)."""
    counts: dict[str, int] = {}
    if REACH.exists():
        for line in REACH.read_text().splitlines():
            name, _, n = line.rpartition("=")
            counts[name] = counts.get(name, 0) + int(n)
    return counts


def campaign(min_calls: int, extra: list[str]) -> int:
    REACH.parent.mkdir(parents=True, exist_ok=True)
    REACH.unlink(missing_ok=True)
    done = forge("fuzz", ["test", "--json", *extra], capture_output=True)
    try:
        suites = json.loads(done.stdout)
    except ValueError:
        sys.stderr.write(done.stdout[-5000:] + done.stderr[-5000:])
        print("campaign: forge produced no JSON result (compile error?)", file=sys.stderr)
        return 1
    failures, calls, invariants, fuzzed = [], 0, 0, 0
    handler_problems = []
    for suite, result in sorted(suites.items()):
        for name, test in sorted(result["test_results"].items()):
            kind = test.get("kind") or {}
            label = f"{Path(suite.split(':')[0]).name}:{suite.split(':')[-1]}.{name}"
            if test["status"] != "Success":
                failures.append(
                    f"{label}: {test.get('reason')}\n    counterexample: "
                    f"{json.dumps(test.get('counterexample'))[:4000]}"
                )
                continue
            if "Invariant" in kind:
                invariants += 1
                calls += kind["Invariant"]["calls"]
                _print_invariant(label, kind["Invariant"], handler_problems)
            elif "Fuzz" in kind:
                fuzzed += 1
                print(f"fuzz      {label}: runs {kind['Fuzz']['runs']}")
            else:
                print(f"unit      {label}")
    print(f"handler calls: {calls} (invariant tests: {invariants}, fuzz tests: {fuzzed})")
    counts = reached()
    if invariants:
        print("outcomes reached: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    missing = [name for name in MUST_REACH if not counts.get(name)] if invariants else []
    problems = _campaign_problems(missing, failures, handler_problems, calls, min_calls)
    if done.returncode != 0 and not problems:
        problems.append(f"campaign: forge exited {done.returncode}\n{done.stderr[-3000:]}")
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


def _print_invariant(label: str, inv: dict, handler_problems: list[str]) -> None:
    """Prints an invariant test's runs and each handler's calls; a handler never called or
    reverting is added to ``handler_problems``."""
    print(f"invariant {label}: runs {inv['runs']}, calls {inv['calls']}, reverts {inv['reverts']}")
    for fn, m in sorted(inv.get("metrics", {}).items()):
        short = fn.split(":")[-1]
        print(
            f"    {short:<55} calls {m['calls']:>7}  reverts {m['reverts']:>5}  discards {m['discards']}"
        )
        if m["calls"] == 0:
            handler_problems.append(f"{label}: {short} was never called")
        if m["reverts"]:
            handler_problems.append(f"{label}: {short} reverted {m['reverts']} times")


def _campaign_problems(
    missing: list[str],
    failures: list[str],
    handler_problems: list[str],
    calls: int,
    min_calls: int,
) -> list[str]:
    """Why the campaign fails, one message each: outcomes never reached, failing tests,
    handler problems, too few handler calls."""
    problems = []
    if missing:
        problems.append(f"campaign: never reached: {', '.join(missing)}")
    if failures:
        problems.append(f"campaign: {len(failures)} failing test(s):\n" + "\n".join(failures))
    if handler_problems:
        problems.append("campaign: handler problems:\n  " + "\n  ".join(handler_problems))
    if calls < min_calls:
        problems.append(f"campaign: {calls} handler calls, fewer than {min_calls}")
    return problems


def parse_lcov(text: str) -> dict[str, dict[str, int]]:
    """{source file: {lines_found, lines_hit, branches_found, branches_hit}} from an lcov tracefile."""
    files: dict[str, dict[str, int]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("SF:"):
            current = files.setdefault(line[3:], {"lf": 0, "lh": 0, "brf": 0, "brh": 0})
        elif current is not None and ":" in line:
            key, _, value = line.partition(":")
            if key in ("LF", "LH", "BRF", "BRH"):
                current[key.lower()] += int(value)
        elif line == "end_of_record":
            current = None
    return files


def percent(hit: int, found: int) -> float:
    return 100.0 * hit / found if found else 100.0


def coverage_gate(lcov_text: str, minimum: float) -> tuple[bool, str]:
    """Checks the contracts/*.sol records (not tests, not libraries) of an lcov file; returns (ok, report)."""
    own = {
        f: c
        for f, c in parse_lcov(lcov_text).items()
        if re.fullmatch(rf"{CONTRACTS}/[^/]+\.sol", f.replace(os.sep, "/"))
    }
    if not own:
        return False, "no contracts/*.sol record in the lcov report"
    rows = ["contract                      lines              branches"]
    total = {"lf": 0, "lh": 0, "brf": 0, "brh": 0}
    for f, c in sorted(own.items()):
        rows.append(
            f"{Path(f).name:<28} {c['lh']:>4}/{c['lf']:<4} {percent(c['lh'], c['lf']):6.2f}%  "
            f"{c['brh']:>4}/{c['brf']:<4} {percent(c['brh'], c['brf']):6.2f}%"
        )
        for k in total:
            total[k] += c[k]
    lines, branches = percent(total["lh"], total["lf"]), percent(total["brh"], total["brf"])
    rows.append(
        f"{'total':<28} {total['lh']:>4}/{total['lf']:<4} {lines:6.2f}%  "
        f"{total['brh']:>4}/{total['brf']:<4} {branches:6.2f}%"
    )
    # the total and every contract on its own: a small contract cannot hide behind a large one
    ok = (
        lines >= minimum
        and branches >= minimum
        and all(
            percent(c["lh"], c["lf"]) >= minimum and percent(c["brh"], c["brf"]) >= minimum
            for c in own.values()
        )
    )
    rows.append(
        f"coverage gate (>= {minimum:g}% of lines and of branches, each contract and in all): "
        f"{'pass' if ok else 'FAIL'}"
    )
    return ok, "\n".join(rows)


def coverage(minimum: float, extra: list[str]) -> int:
    LCOV.parent.mkdir(parents=True, exist_ok=True)
    LCOV.unlink(missing_ok=True)
    done = forge(
        "coverage",
        [
            "coverage",
            "--report",
            "lcov",
            "--report-file",
            str(LCOV),
            "--no-match-coverage",
            r"(^|/)(tests|node_modules)/",
            *extra,
        ],
        capture_output=True,
    )
    if done.returncode != 0 or not LCOV.exists():
        sys.stderr.write(done.stdout[-5000:] + done.stderr[-5000:])
        print(f"coverage: forge coverage failed (exit {done.returncode})", file=sys.stderr)
        return 1
    ok, report = coverage_gate(LCOV.read_text(), minimum)
    print(report)
    return 0 if ok else 1


def solhint(extra: list[str]) -> int:
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / CONTRACTS).glob("*.sol"))
    # --disc: no network check for a newer solhint; --max-warnings 0: a warning fails the gate too.
    done = subprocess.run(
        [
            str(SOLHINT),
            "--disc",
            "--max-warnings",
            "0",
            "--config",
            ".solhint.json",
            *extra,
            *files,
        ],
        cwd=ROOT,
        text=True,
        capture_output=True,
    )
    sys.stdout.write(done.stdout)
    sys.stderr.write(done.stderr)
    print(f"solhint: {len(files)} files, exit {done.returncode}")
    return done.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tools/forge_gates.py", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("gate", choices=["campaign", "coverage", "solhint"])
    parser.add_argument("--min-calls", type=int, default=MIN_CALLS)
    parser.add_argument("--min-coverage", type=float, default=MIN_COVERAGE)
    args, extra = parser.parse_known_args(argv)
    if args.gate == "campaign":
        return campaign(args.min_calls, extra)
    if args.gate == "coverage":
        return coverage(args.min_coverage, extra)
    return solhint(extra)


if __name__ == "__main__":
    sys.exit(main())
