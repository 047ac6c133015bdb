"""Slither over a forge build of contracts/: any high or medium finding fails.

forge (npm, offline, through the tools/solc wrapper; foundry.toml) writes the build info, Slither
(its own venv: it pins web3 7) reads it with --foundry-ignore-compile. No detector is excluded:
a finding judged a false positive is silenced on its line in the contract with
`// slither-disable-next-line <detector>` and a one-line reason, where a reviewer sees it.
A control project with a known reentrancy shows the same command really fails.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from node import paths

SLITHER = paths.ROOT / ".venv-slither" / "bin" / "slither"
FAILING_IMPACTS = {"High", "Medium"}
SUITE = {"ModelRegistry", "Marketplace", "Votes", "Validators"}

pytestmark = [pytest.mark.slither, pytest.mark.slow]

VULNERABLE = """// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;
contract Leaky {
    mapping(address => uint256) public balance;
    function deposit() external payable { balance[msg.sender] += msg.value; }
    function withdraw() external {
        (bool ok,) = msg.sender.call{value: balance[msg.sender]}("");
        require(ok);
        balance[msg.sender] = 0;
    }
}
"""


def run(cmd: list, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PATH"] = (
        f"{paths.NODE_MODULES / '.bin'}{os.pathsep}{env.get('PATH', '')}"  # crytic calls `forge config`
    )
    return subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def forge_build(project: Path) -> None:
    # --force: a fresh build info; forge keeps old ones beside it, and Slither would read those too.
    built = run(
        [
            str(paths.FORGE_BIN),
            "build",
            "--force",
            "--use",
            str(paths.SOLC_WRAPPER),
            "--build-info",
        ],
        project,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]


def slither(project: Path, report: Path) -> tuple[subprocess.CompletedProcess, list[dict]]:
    """Slither with CI's options; returns the process and its detector results."""
    out_dir = re.search(
        r'^out\s*=\s*"([^"]+)"', (project / "foundry.toml").read_text(), re.MULTILINE
    ).group(1)
    done = run(
        [
            str(SLITHER),
            ".",
            "--compile-force-framework",
            "foundry",
            "--foundry-ignore-compile",
            "--foundry-out-directory",
            out_dir,
            "--exclude-dependencies",
            "--fail-medium",
            "--json",
            str(report),
        ],
        project,
    )
    assert report.exists(), done.stderr[-3000:]
    result = json.loads(report.read_text())
    assert result["success"], result["error"]
    return done, result["results"].get("detectors", [])


def describe(findings: list[dict]) -> str:
    return "\n".join(f"[{f['check']}, {f['impact']}] {f['description'].strip()}" for f in findings)


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    assert SLITHER.exists(), f"{SLITHER} missing: run `bash tools/setup.sh`"
    return tmp_path_factory.mktemp("slither")


def test_no_high_or_medium_finding_in_the_suite(report_dir):
    forge_build(paths.ROOT)
    done, findings = slither(paths.ROOT, report_dir / "suite.json")
    analysed = re.search(r"analyzed \((\d+) contracts", done.stderr)
    assert analysed and int(analysed.group(1)) >= len(SUITE), done.stderr[-2000:]
    for name in SUITE:  # the build Slither read holds the whole suite
        assert (paths.BUILD_DIR / "forge" / "out" / f"{name}.sol" / f"{name}.json").exists(), name
    failing = [f for f in findings if f["impact"] in FAILING_IMPACTS]
    assert not failing, "Slither high/medium findings:\n" + describe(failing)
    assert done.returncode == 0, done.stderr[-3000:]


def test_the_gate_fails_on_a_known_reentrancy(report_dir, tmp_path):
    (tmp_path / "contracts").mkdir()
    (tmp_path / "contracts" / "Leaky.sol").write_text(VULNERABLE)
    (tmp_path / "foundry.toml").write_text((paths.ROOT / "foundry.toml").read_text())
    forge_build(tmp_path)
    done, findings = slither(tmp_path, report_dir / "control.json")
    assert done.returncode != 0
    assert any(f["check"] == "reentrancy-eth" and f["impact"] == "High" for f in findings), (
        describe(findings)
    )
