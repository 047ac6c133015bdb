"""`modex serve` as a process: a real anvil chain, the deployed Marketplace, signed HTTP requests.

The CLI serves what benchmarks/serve.py measures (int8 on CPU, two batcher workers); a licensed
buyer gets answers, everyone else a clear JSON refusal.
"""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest
from eth_account import Account

from ml import signing
from node.procs import stop_process
from tests.ml.conftest import licensed_deployment, start_modex_serve

pytestmark = [pytest.mark.anvil, pytest.mark.slow]


@pytest.fixture(params=[[], ["--processes", "2"]], ids=["one-process", "two-processes"])
def served(request, anvil, tiny_model, tmp_path):
    """(chain, buyer, stranger, model_id, base URL, banner, process) with `modex serve` running
    as a subprocess: one process, then two sharing the port."""
    yield from _serve(request.param, anvil, tiny_model, tmp_path)


@pytest.fixture
def served_twice(anvil, tiny_model, tmp_path):
    yield from _serve(["--processes", "2"], anvil, tiny_model, tmp_path)


def _serve(extra_args, anvil, tiny_model, tmp_path):
    chain, buyer, model_id, config = licensed_deployment(
        anvil.url, tmp_path, "bafkreitestcidformodexserve"
    )
    stranger = Account.create()
    with open(tmp_path / "serve.log", "w+") as log:
        proc, port, banner = start_modex_serve(tiny_model[0], model_id, config, extra_args, log)
        try:
            if "serving model" not in banner:
                stop_process(proc)
                log.seek(0)
                pytest.fail(f"modex serve did not start: {banner}{proc.stdout.read()}{log.read()}")
            yield chain, buyer, stranger, model_id, f"http://127.0.0.1:{port}", banner, proc
        finally:
            stop_process(proc, timeout=20)


def _children(pid: int) -> set[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return {int(x) for x in f.read().split()}


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_modex_serve_answers_licensed_buyers_and_refuses_others(served):
    chain, buyer, stranger, model_id, url, banner, proc = served
    two = "--processes" in proc.args
    # the CPU default, what benchmarks/serve.py measures; or two processes of one worker each
    assert ("(int8, 2 processes x 1 workers)" if two else "(int8, 2 workers)") in banner

    def ask(who, texts=("great phone, love it", "worst service ever")):
        body = signing.sign_request(
            who,
            model_id=model_id,
            inputs=list(texts),
            chain_id=chain.chain_id,
            verifying_contract=chain.marketplace.address,
        )
        return body, httpx.post(f"{url}/v1/infer", json=body, timeout=30)

    body, r = ask(buyer)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["signer"] == buyer.address
    labels = [o["label"] for o in answer["outputs"]]
    assert len(labels) == 2 and set(labels) <= {"negative", "neutral", "positive"}
    # the same nonce again, each time on a new connection: with two processes the kernel hands
    # the connections to either, and both must know the nonce is used (one shared store)
    for _ in range(8):
        replay = httpx.post(f"{url}/v1/infer", json=body, timeout=30)
        assert replay.status_code == 409 and replay.json()["error"]["code"] == "replayed"
    for _ in range(4):
        body, r = ask(buyer, ("fine",))
        assert r.status_code == 200, r.text
    _, r = ask(stranger)
    assert r.status_code == 403 and r.json()["error"]["code"] == "no_licence"
    # the health check runs the canary through the served model (issue 14: a real inference)
    r = httpx.get(f"{url}/v1/health", timeout=30)
    assert r.status_code == 200 and r.json()["status"] == "ok", r.text
    assert r.json()["models"][str(model_id)]["status"] == "ok"
    if two:  # SIGTERM to the parent stops its serving processes too
        children = _serving_children(proc.pid)
        assert len(children) == 2
        stop_process(proc, timeout=20)
        assert proc.returncode == 0
        assert not [c for c in children if _alive(c)]


def _serving_children(pid: int) -> list[int]:
    """The serving processes `modex serve --processes` spawned (not multiprocessing's tracker)."""
    found = []
    for child in _children(pid):
        with open(f"/proc/{child}/cmdline", "rb") as f:
            if b"spawn_main" in f.read():
                found.append(child)
    return found


def test_a_serving_process_that_dies_stops_the_server_and_its_sibling(served_twice, tmp_path):
    *_, proc = served_twice
    serving = _serving_children(proc.pid)
    assert len(serving) == 2 and all(_alive(c) for c in serving)
    os.kill(serving[0], signal.SIGKILL)
    assert proc.wait(timeout=30) == 1  # the server stops, for its supervisor to restart it
    log = (tmp_path / "serve.log").read_text()
    assert "serving process modex-serve-" in log and "exited with code -9" in log
    # One sentence from the CLI's one handler, after the log line.
    assert "modex: error: serving process modex-serve-" in log and "the server stopped" in log
    assert not [c for c in serving if _alive(c)]


def test_serving_processes_exit_when_the_parent_is_killed_outright(served_twice):
    *_, proc = served_twice
    serving = _serving_children(proc.pid)
    assert len(serving) == 2
    os.kill(proc.pid, signal.SIGKILL)  # no chance to stop them: they must notice on their own
    proc.wait(timeout=10)
    deadline = time.monotonic() + 15
    while any(_alive(c) for c in serving) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [c for c in serving if _alive(c)]
