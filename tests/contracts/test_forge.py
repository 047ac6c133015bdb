"""The Solidity gates besides Slither, run by `bash tools/test.sh`: the forge invariant campaign and fuzz
tests (tests/forge/, profile fuzz in foundry.toml), the coverage gate (>= 95 % of lines and branches of
contracts/*.sol) and solhint (.solhint.json). Each runs tools/forge_gates.py, the same command a
developer runs, and prints what it measured.

Each gate is also shown to fail: the campaign on a copy of the contracts with a known bug, the
coverage parser on a report below the bar, solhint on a contract that breaks a recommended rule.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from node import paths

GATES = paths.ROOT / "tools" / "forge_gates.py"
MIN_CALLS = 100_000

pytestmark = [pytest.mark.forge, pytest.mark.slow]


def gate(*args: str, cwd: Path = paths.ROOT, env: dict | None = None, timeout: int = 1200):
    return subprocess.run(
        [sys.executable, str(cwd / "tools" / "forge_gates.py"), *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def show(capsys, text: str) -> None:
    with capsys.disabled():  # in the CI log even when the test passes
        print("\n" + text.strip())


def test_invariant_campaign_and_fuzz_tests(capsys):
    done = gate("campaign")
    summary = [
        line for line in done.stdout.splitlines() if not line.startswith(("fuzz ", "unit ", "    "))
    ]
    show(capsys, "\n".join(summary))
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-6000:]
    calls = int(re.search(r"^handler calls: (\d+)", done.stdout, re.MULTILINE).group(1))
    assert calls >= MIN_CALLS, f"{calls} handler calls, fewer than {MIN_CALLS}"
    fuzzed = int(re.search(r"fuzz tests: (\d+)", done.stdout).group(1))
    assert fuzzed >= 30, done.stdout  # a fuzz test for each external function's arguments


def test_coverage_gate(capsys):
    done = gate("coverage")
    show(capsys, done.stdout)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-6000:]
    for name in ("Marketplace.sol", "ModelRegistry.sol", "Validators.sol", "Votes.sol"):
        assert re.search(rf"^{name}\s", done.stdout, re.MULTILINE), (
            f"{name} missing from the coverage report"
        )


def test_solhint_gate(capsys):
    done = gate("solhint")
    show(capsys, done.stdout + done.stderr)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-6000:]
    contracts = len(list((paths.ROOT / "contracts").glob("*.sol")))  # every contract, none skipped
    assert f"solhint: {contracts} files, exit 0" in done.stdout


def _project_copy(tmp_path: Path) -> Path:
    """contracts/, tests/forge/, foundry.toml and .solhint.json copied; node_modules and tools linked."""
    project = tmp_path / "project"
    (project / "tests").mkdir(parents=True)
    shutil.copytree(paths.ROOT / "contracts", project / "contracts")
    shutil.copytree(paths.ROOT / "tests" / "forge", project / "tests" / "forge")
    for name in ("foundry.toml", ".solhint.json"):
        shutil.copy(paths.ROOT / name, project / name)
    for name in ("node_modules", "tools"):
        (project / name).symlink_to(paths.ROOT / name)
    return project


def test_the_campaign_fails_on_a_contract_that_delivers_to_anyone(tmp_path):
    """deliverKey without its buyer check (the reorg bug of issue 13): a short campaign must fail."""
    project = _project_copy(tmp_path)
    market = project / "contracts" / "Marketplace.sol"
    source = market.read_text()
    check = "        if (p.account != buyer) {"
    assert source.count(check) == 1
    market.write_text(source.replace(check, "        if (p.account == address(0)) {"))
    done = gate(
        "campaign",
        "--min-calls",
        "0",
        "--match-path",
        "tests/forge/invariant/*",
        "--fuzz-seed",
        "1",
        cwd=project,
        env={"FOUNDRY_INVARIANT_RUNS": "5", "FOUNDRY_INVARIANT_DEPTH": "300"},
    )
    assert done.returncode != 0, done.stdout[-3000:]
    assert "did not revert MarketplaceWrongBuyer" in done.stderr, (
        done.stdout[-3000:] + done.stderr[-3000:]
    )


def test_the_coverage_gate_fails_below_the_bar():
    # tools/ is not a package: the gate script is imported from its folder, for this test only
    sys.path.insert(0, str(GATES.parent))
    try:
        import forge_gates
    finally:
        sys.path.pop(0)

    def record(path: str, lf: int, lh: int, brf: int, brh: int) -> str:
        return f"SF:{path}\nLF:{lf}\nLH:{lh}\nBRF:{brf}\nBRH:{brh}\nend_of_record\n"

    good = record("contracts/A.sol", 100, 100, 10, 10) + record("contracts/B.sol", 50, 50, 4, 4)
    ok, report = forge_gates.coverage_gate(good, 95.0)
    assert ok, report
    # tests, libraries and contracts in subfolders do not count, either way
    noise = record("tests/forge/World.sol", 100, 0, 10, 0) + record(
        "node_modules/x/Y.sol", 100, 0, 10, 0
    )
    assert forge_gates.coverage_gate(good + noise, 95.0)[0]
    # below the bar in branches of one contract, though the total passes
    ok, report = forge_gates.coverage_gate(
        good.replace("BRH:4", "BRH:3") + record("contracts/C.sol", 900, 900, 90, 90), 95.0
    )
    assert not ok and "FAIL" in report, report
    ok, report = forge_gates.coverage_gate(record("contracts/A.sol", 100, 94, 10, 10), 95.0)
    assert not ok, report
    assert not forge_gates.coverage_gate(noise, 95.0)[0]  # no contract at all is a failure


def test_solhint_fails_on_a_violation(tmp_path):
    project = _project_copy(tmp_path)
    (project / "contracts" / "Bad.sol").write_text(
        "// SPDX-License-Identifier: MIT\npragma solidity ^0.8.24;\n\n"
        "/// @notice tx.origin for authorisation breaks a recommended rule (avoid-tx-origin).\n"
        "contract Bad {\n    address private _owner = tx.origin;\n\n"
        "    /// @notice Owner check by origin.\n"
        "    function isOwner() external view returns (bool) {\n        return tx.origin == _owner;\n    }\n}\n"
    )
    done = gate("solhint", cwd=project)
    assert done.returncode != 0, done.stdout
    assert "avoid-tx-origin" in done.stdout, done.stdout
