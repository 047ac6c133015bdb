"""A validator killed (SIGKILL) between its commit and its reveal still reveals after a restart.

Each test runs its own anvil and the validator as `modex validate` in a subprocess (a SIGKILL ends
only it), with a fake evaluator patched into the CLI (ml/ is tested elsewhere). The salt and what
it commits to are written durably before the commit is sent, so:
- killed after its commit was mined: the restarted agent reveals with the recorded salt;
- killed after sending the commit, before its receipt: the chain says whether it was mined (the
  seat, ``commitmentOf``): mined later, the restart reveals it; dropped, the restart sends the same
  commitment again (the recorded salt), then reveals it.
Either way the model ends Verified and no bond is lost.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time

import pytest
from modex_stack import make_stack, time_travel
from test_worker_replace import rpc
from validator_helpers import attested, evaluator_of, publish_claimed, round_of, seat, toy_report
from worker_helpers import deliver_keys

from node.devchain import start_anvil
from node.onchain import work_digest
from node.protocol import ModelStatus, SeatState
from node.validator import ValidatorAgent, state_path

REPORT = toy_report()
# `modex` with the evaluator replaced (the report comes from the environment).
FAKE_EVALUATOR_CLI = (
    "import json, os, sys\n"
    "import modex.commands.validate as validate\n"
    "validate.ml_evaluator = lambda model_dir, metadata: json.loads(os.environ['TEST_REPORT'])\n"
    "from modex.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


@pytest.fixture
def stack(tmp_path):
    """A stack on its own anvil (commit period long enough to kill in, short reveal period), one
    claimed listing, and the validator staked with its key delivered."""
    node = start_anvil()
    try:
        stack = make_stack(
            "anvil",
            tmp_path,
            anvil_url=node.url,
            delivery_window=3600,
            commit_period=8,
            reveal_period=3,
        )
        stack.model = publish_claimed(stack, tmp_path / "m", REPORT)
        stack.state = state_path(
            stack.data_dir("validator"), stack.chain.chain_id, stack.signers["validator"].address
        )  # the CLI's file
        agent = ValidatorAgent(
            stack.chain,
            stack.signers["validator"],
            stack.store("validator"),
            stack.state,
            work_dir=tmp_path / "work",
            evaluator=evaluator_of(REPORT),
        )
        assert agent.poll().requested
        assert deliver_keys(stack, tmp_path / "worker.json")
        assert seat(stack, stack.model).state == SeatState.KEYED
        yield stack
    finally:
        node.stop()


def validator_cmd(stack, *argv: str) -> list[str]:
    return [sys.executable, "-c", FAKE_EVALUATOR_CLI, "validate", *argv, *stack.args("validator")]


def env(stack) -> dict:
    return {**stack.env(), "TEST_REPORT": json.dumps(REPORT), "MODEX_RECEIPT_TIMEOUT": "60"}


def kill_when_logged(stack, marker: str, timeout: float = 90) -> str:
    """Run the long-running agent until its log shows ``marker``, then SIGKILL it; its log."""
    proc = subprocess.Popen(
        validator_cmd(stack, "--interval", "0.2"),
        env=env(stack),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    seen, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                assert proc.poll() is None, "".join(seen)
                continue
            seen.append(line)
            if marker in line:
                os.kill(proc.pid, signal.SIGKILL)
                assert proc.wait(timeout=20) == -signal.SIGKILL
                return "".join(seen)
        raise AssertionError(f"{marker!r} not logged within {timeout} s:\n{''.join(seen)}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def recorded(stack) -> dict:
    """The killed agent's record of the model: salt, round, commitment."""
    doc = json.loads(stack.state.read_text())
    commitment = doc["models"][str(stack.model)]["commitment"]
    assert len(bytes.fromhex(commitment["salt"])) == 32 and not commitment["revealed"]
    return commitment


def on_chain_commitment(stack) -> str:
    return bytes(
        stack.chain.call(
            stack.chain.validators.functions.commitmentOf(
                stack.model, stack.signers["validator"].address
            )
        )
    ).hex()


def restart_until_settled(stack) -> str:
    proc = subprocess.run(
        validator_cmd(
            stack, "--until-settled", str(stack.model), "--timeout", "90", "--interval", "0.3"
        ),
        env=env(stack),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def check_verified(stack, commitment: dict) -> None:
    assert (
        ModelStatus(stack.chain.call(stack.chain.validators.functions.status(stack.model)))
        == ModelStatus.VERIFIED
    )
    [event] = attested(stack, stack.model)
    assert event["matches"] and bytes(event["workDigest"]) == work_digest(REPORT)
    commits = stack.chain.events("AttestationCommitted", modelId=stack.model)
    assert {bytes(e["args"]["commitment"]).hex() for e in commits} == {commitment["commitment"]}
    [released] = stack.chain.events("SeatReleased", modelId=stack.model)
    assert released["args"]["forfeited"] == 0
    assert seat(stack, stack.model).state == SeatState.RELEASED


@pytest.mark.anvil
def test_a_validator_killed_between_commit_and_reveal_reveals_after_a_restart(stack):
    log = kill_when_logged(stack, "committed in round 1")
    assert "sent commitAttestation" in log and "revealAttestation" not in log
    commitment = recorded(stack)
    assert seat(stack, stack.model).state == SeatState.COMMITTED
    assert on_chain_commitment(stack) == commitment["commitment"] and commitment["round"] == 1

    out = restart_until_settled(stack)
    assert f"model {stack.model}: revealed" in out
    assert "waiting for the reveal period to end, then it settles: until" in out
    assert f"model {stack.model}: settled verified" in out and "seat released" in out
    check_verified(stack, commitment)
    assert stack.model not in json.loads(stack.state.read_text())["todo"]


@pytest.mark.anvil
@pytest.mark.parametrize("mined", [True, False], ids=["mined-later", "dropped"])
def test_a_validator_killed_before_its_commit_was_mined_follows_the_chain(stack, mined):
    rpc(stack, "evm_setAutomine", False)
    kill_when_logged(stack, "sent commitAttestation")  # in the pool, not mined
    commitment = recorded(stack)  # written before the commit was sent
    assert (
        seat(stack, stack.model).state == SeatState.KEYED
        and int(on_chain_commitment(stack), 16) == 0
    )

    if mined:
        rpc(stack, "evm_mine")
        assert seat(stack, stack.model).state == SeatState.COMMITTED
        assert on_chain_commitment(stack) == commitment["commitment"]
    else:
        rpc(stack, "anvil_dropAllTransactions")
    rpc(stack, "evm_setAutomine", True)
    if mined:  # no need to wait out the commit period in real time
        now = stack.chain.get_block("latest")["timestamp"]
        time_travel(stack.chain, round_of(stack, stack.model).commit_end - now + 1)
    restart_until_settled(stack)
    check_verified(stack, commitment)  # the same commitment: the recorded salt was sent again
