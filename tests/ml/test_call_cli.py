"""`modex call` against `modex serve`, both as processes, on a real anvil chain: a licence holder
gets one answer per text, an account without a licence a clear refusal and a non-zero exit."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from eth_account import Account

from modex import cli
from node.keystore import PASSWORD_ENV, import_private_key
from node.procs import stop_process
from tests.ml.conftest import licensed_deployment, start_modex_serve

pytestmark = [pytest.mark.anvil, pytest.mark.slow]

PASSWORD = "call test password"
TEXTS = ["great phone, love it", "worst service ever"]
LABELS = {"negative", "neutral", "positive"}


@pytest.fixture(scope="module")
def service(anvil, tiny_model, tmp_path_factory):
    """(model id, config, URL, the lines modex serve printed, {name: keystore}) while `modex
    serve` runs; "buyer" holds a licence for the model, "stranger" none."""
    folder = tmp_path_factory.mktemp("call")
    _, buyer, model_id, config = licensed_deployment(anvil.url, folder, "bafkreitestmodexcall")
    keystores = {}
    for name, account in (("buyer", buyer), ("stranger", Account.create())):
        keystores[name] = folder / f"{name}.json"
        import_private_key(keystores[name], account.key.hex(), PASSWORD, scrypt_n=2**4)
    with open(folder / "serve.log", "w+") as log:
        proc, port, banner = start_modex_serve(tiny_model[0], model_id, config, [], log)
        try:
            if "serving model" not in banner:
                log.seek(0)
                pytest.fail(f"modex serve did not start: {banner}{log.read()}")
            printed = [banner, proc.stdout.readline()]
            yield model_id, config, f"http://127.0.0.1:{port}", printed, keystores
        finally:
            stop_process(proc, timeout=20)


def call_args(service, who: str, *argv: str) -> list[str]:
    model_id, config, url, _, keystores = service
    return [
        "call",
        str(model_id),
        *TEXTS,
        "--url",
        url,
        "--config",
        str(config),
        "--keystore",
        str(keystores[who]),
        *argv,
    ]


def run_modex_call(service, who: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MODEX_CHAIN"}
    return subprocess.run(
        [sys.executable, "-m", "modex", *call_args(service, who)],
        env={**env, PASSWORD_ENV: PASSWORD},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_modex_serve_prints_the_url_and_the_call_to_make(service):
    model_id, _, url, printed, _ = service
    routes, chain = printed[0].split(f" at {url} (", 1)[1].split("; ", 1)
    assert {"POST /v1/infer", "GET /v1/models"} <= set(routes.split(", "))
    assert chain.startswith("chain 31337, marketplace 0x")
    assert (
        printed[1].strip()
        == f"licence holders call it with: modex call {model_id} TEXT... --url {url}"
    )


def test_a_licence_holder_gets_a_label_and_score_per_text(service):
    proc = run_modex_call(service, "buyer")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == len(TEXTS)
    for line, text in zip(lines, TEXTS, strict=True):
        label, score, said = line.split(maxsplit=2)
        assert label in LABELS and 0 <= float(score) <= 1 and said == text


def test_an_account_without_a_licence_is_refused_in_words(service):
    model_id = service[0]
    proc = run_modex_call(service, "stranger")
    assert proc.returncode == 1 and proc.stdout == ""
    said = proc.stderr.strip().splitlines()[-1]
    assert said.startswith("modex: error: the service refused the call (403 no_licence): 0x")
    assert f"holds no licence for model {model_id}" in said
    assert f"To call it, buy a licence with `modex buy {model_id}`" in said


def test_json_prints_the_service_response(service, monkeypatch, capsys):
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    monkeypatch.delenv("MODEX_CHAIN", raising=False)
    assert cli.main(call_args(service, "buyer", "--json")) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["modelId"] == service[0]
    assert [o["label"] in LABELS for o in answer["outputs"]] == [True, True]
