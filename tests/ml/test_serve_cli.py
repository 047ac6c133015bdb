"""`modex serve` as a process: a real anvil chain, the deployed Marketplace, signed HTTP requests.

The CLI serves what benchmarks/serve.py measures (int8 on CPU, two batcher workers) under
gunicorn (a master and --processes workers); a licensed buyer gets answers, everyone else a clear
JSON refusal; the used nonces live in the SQLite state file in the data dir.
"""

from __future__ import annotations

import os
import signal
import time
from types import SimpleNamespace

import httpx
import pytest
from eth_account import Account
from gunicorn.arbiter import Arbiter
from gunicorn.errors import HaltServer

from ml import signing
from modex.cli import main as modex
from modex.commands.serve import ServiceServer
from node.chain import Chain
from node.devchain import free_port
from node.errors import ModexError
from node.procs import running as _alive
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


def _ask(url, chain, model_id, who, texts, timeout=30):
    """(the signed body, the service's answer) for ``who`` asking about ``texts``."""
    body = signing.sign_request(
        who,
        model_id=model_id,
        inputs=list(texts),
        chain_id=chain.chain_id,
        verifying_contract=chain.marketplace.address,
    )
    return body, httpx.post(f"{url}/v1/infer", json=body, timeout=timeout)


def test_modex_serve_answers_licensed_buyers_and_refuses_others(served, tmp_path):
    chain, buyer, stranger, model_id, url, banner, proc = served
    two = "--processes" in proc.args
    # the CPU default, what benchmarks/serve.py measures; or two processes of one worker each
    assert ("(int8, 2 processes x 1 workers)" if two else "(int8, 2 workers)") in banner

    def ask(who, texts=("great phone, love it", "worst service ever")):
        return _ask(url, chain, model_id, who, texts)

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
    # the workers share the state file in the data dir: one per chain and deployment
    state = tmp_path / "service" / f"{chain.chain_id}-{chain.marketplace.address.lower()}.sqlite3"
    assert state.is_file()
    children = _serving_children(proc.pid)
    assert len(children) == (2 if two else 1)  # gunicorn's workers, under its master
    stop_process(proc, timeout=20)  # SIGTERM to the master stops its workers too
    assert proc.returncode == 0
    assert not [c for c in children if _alive(c)]


def _serving_children(pid: int) -> list[int]:
    """The serving processes (gunicorn workers) of `modex serve`: its children."""
    return sorted(_children(pid))


def test_a_serving_process_that_dies_is_replaced(served_twice):
    chain, buyer, _, model_id, url, banner, proc = served_twice
    serving = _serving_children(proc.pid)
    assert len(serving) == 2 and all(_alive(c) for c in serving)
    os.kill(serving[0], signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        now = _serving_children(proc.pid)
        if len(now) == 2 and serving[0] not in now:
            break
        time.sleep(0.2)
    assert serving[0] not in now and len(now) == 2, now  # gunicorn started another
    assert proc.poll() is None  # the server never stopped
    for _ in range(6):  # each on a new connection: both workers answer (the new one once loaded)
        _, r = _ask(url, chain, model_id, buyer, ["fine"], timeout=60)
        assert r.status_code == 200, r.text
    stop_process(proc, timeout=20)
    rest = proc.stdout.read()  # the banner's second line, and no banner from the new worker
    assert rest.count("licence holders call it with") == 1 and "serving model" not in rest


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


def test_a_worker_that_cannot_start_stops_the_server_in_one_sentence(anvil, tmp_path):
    _, _, model_id, config = licensed_deployment(anvil.url, tmp_path, "bafkreitestcidbrokenmodel")
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{}")  # a model folder that does not load
    with open(tmp_path / "serve.log", "w+") as log:
        proc, _, said = start_modex_serve(broken, model_id, config, ["--processes", "2"], log)
        try:
            assert proc.wait(timeout=120) == 1 and said == ""  # no banner: it never served
        finally:
            stop_process(proc)
        log.seek(0)
        assert "modex: error: a serving process could not start" in log.read()


def test_a_worker_failing_to_boot_while_the_master_halts_is_the_same_sentence():
    """gunicorn's halt() reaps the workers it stops, and one more that failed to boot meanwhile
    raises HaltServer out of the master's run (seen when both of two workers fail at once on a
    loaded machine): the same sentence as the first one's."""

    def run():
        raise HaltServer("Worker failed to boot.", Arbiter.WORKER_BOOT_ERROR)

    with pytest.raises(ModexError, match="a serving process could not start"):
        ServiceServer.serve(SimpleNamespace(run=run))


def test_an_unreachable_state_store_is_one_sentence(tiny_model, monkeypatch, capsys):
    chain = SimpleNamespace(chain_id=31337, marketplace=SimpleNamespace(address="0x" + "5f" * 20))
    monkeypatch.setattr(Chain, "from_config", classmethod(lambda cls, config: chain))
    monkeypatch.delenv("MODEX_CHAIN", raising=False)
    state = f"redis://:hunter2@127.0.0.1:{free_port()}/0"  # nothing listens there
    argv = ["serve", str(tiny_model[0]), "--model-id", "1", "--chain", "http://127.0.0.1:9"]
    assert modex([*argv, "--port", "0", "--state", state]) == 1
    err = capsys.readouterr().err
    assert err.startswith("modex: error: the state store redis://:***@127.0.0.1:")
    assert "hunter2" not in err and "Traceback" not in err
