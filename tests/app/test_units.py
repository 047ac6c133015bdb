"""The app's small parts on their own: amounts, cards, the histogram, session keys, jobs."""

import os
import subprocess
import threading
import time

import pytest

from app import create_app
from app.errors import describe, format_eth, price_changed_message
from app.helpers import (
    InputError,
    local_path,
    parse_eth,
    render_card,
    require_signer,
    vote_histogram_svg,
)
from app.inference import ModelWarmer, ServedModels
from app.jobs import ENDED_WITH_ITS_PROCESS, JobRunner, byte_progress
from app.session_keys import SessionKeys, Unlocked
from app.ui_state import UiState
from node.errors import ContractRevert, KeystoreError
from node.procs import process_started

UINT256_MAX_ETH = "115792089237316195423570985008687907853269984665640564039457.584007913129639935"


@pytest.mark.parametrize(
    "text,wei",
    [
        ("0.1", 10**17),
        ("1", 10**18),
        (" 2.5 ETH", 25 * 10**17),
        ("0", 0),
        ("0.000000000000000001", 1),
        # exact past 28 digits, in every notation Decimal reads, up to the largest uint256
        ("12345678901.123456789012345678", 12345678901123456789012345678),  # 29 digits, exact
        ("1.50000000000000000000", 15 * 10**17),
        ("1E+3", 1000 * 10**18),
        ("0e-99999", 0),
        (UINT256_MAX_ETH, 2**256 - 1),
    ],
)
def test_parse_eth(text, wei):
    assert parse_eth(text) == wei


@pytest.mark.parametrize(
    "text,fragment",
    [
        ("abc", "not a number"),
        ("-1", "zero or more"),
        ("0.0000000000000000001", "18 decimals"),
        ("", "not a number"),
        ("inf", "zero or more"),
        # amounts no contract holds: past uint256, or finer than wei
        ("1e999999", "larger than any amount"),
        ("1e60", "larger than any amount"),
        (UINT256_MAX_ETH[:-1] + "6", "larger than any amount"),
        ("0.1" + "0" * 40 + "1", "18 decimals"),
        ("1e-999999999", "18 decimals"),
    ],
)
def test_parse_eth_refuses(text, fragment):
    with pytest.raises(InputError, match=fragment):
        parse_eth(text)


def test_format_eth_is_exact():
    assert format_eth(2 * 10**17) == "0.2 ETH"
    assert format_eth(10**18) == "1 ETH"
    assert format_eth(1) == "0.000000000000000001 ETH"
    assert price_changed_message(2 * 10**17) == (
        "Price changed to 0.2 ETH since you opened this page; nothing was charged."
    )


def test_card_markdown_is_sanitized():
    html = render_card(
        "# Title\n\n**bold** <script>alert(1)</script> <img src=x onerror=alert(2)>"
        "\n\n[link](javascript:alert(3)) [ok](https://example.org)"
    )
    assert "<h1>Title</h1>" in html and "<strong>bold</strong>" in html
    assert "<script" not in html and "onerror" not in html and "<img" not in html
    assert "javascript:" not in html
    assert 'href="https://example.org"' in html


def test_card_front_matter_is_not_prose_and_metrics_are_readable():
    from app.helpers import metric_rows

    html = render_card("---\nlicense: mit\nmetrics:\n- accuracy\n---\n# Card\n\nBody")
    assert "license" not in html and "<h1>Card</h1>" in html
    rows = dict(
        metric_rows(
            {
                "accuracy": 0.8412345,
                "f1": {"neg": 0.5, "pos": 0.25},
                "labels": ["neg", "pos"],
                "confusion": [[1, 2], [3, 4]],
                "version": 1,
            }
        )
    )
    assert rows == {"accuracy": "0.8412", "f1": "neg 0.5 · pos 0.25", "labels": "neg, pos"}


def test_histogram_is_a_picture_with_counts():
    svg = str(vote_histogram_svg({5: 4, 4: 2, 1: 1}))
    assert svg.startswith("<svg") and svg.count('class="hist-bar"') == 5
    assert "<title>Votes: 7 in all</title>" in svg
    # The tallest bar is the 5-star one and spans the full bar width.
    assert 'width="186" height="18" class="hist-bar"' in svg


def test_describe_price_guard_revert():
    exc = ContractRevert(
        "Price is 0.2 ETH, above your maximum of 0.1 ETH; nothing was charged.",
        error="MarketplacePriceAboveMax",
        args={"price": 2 * 10**17, "maxPrice": 10**17},
    )
    assert describe(exc) == price_changed_message(2 * 10**17)
    assert (
        describe(KeystoreError("wrong password for keystore x")) == "wrong password for keystore x"
    )


def test_session_keys_expire_and_slide():
    now = [0.0]
    keys = SessionKeys(timeout_s=10, clock=lambda: now[0])
    keys.put("a", Unlocked(signer="S"))
    now[0] = 9
    assert keys.get("a").signer == "S"  # use slides the expiry
    now[0] = 18
    assert keys.get("a") is not None
    now[0] = 29
    assert keys.get("a") is None
    keys.put("b", Unlocked(signer="T"))
    keys.drop("b")
    assert keys.get("b") is None and keys.get(None) is None


def test_jobs_progress_result_and_owner():
    runner = JobRunner(max_workers=2)
    gate = threading.Event()

    def work(n, *, progress):
        cb = byte_progress(progress)
        cb("hash", 10, 30)
        cb("hash", 10, 30)
        gate.wait(5)
        return {"n": n}

    job = runner.submit("publish", "me", work, 7)
    deadline = time.monotonic() + 5
    while job.done != 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert job.to_dict()["percent"] == pytest.approx(66.7)
    assert job.state == "running"
    # Another job runs while the first is blocked: long work does not block the pool.
    quick = runner.submit("fetch", "me", lambda *, progress: {"ok": True})
    assert runner.wait(quick.id, 5).result == {"ok": True}
    gate.set()
    assert runner.wait(job.id, 5).result == {"n": 7}
    assert runner.get(job.id, "someone else") is None


def test_jobs_error_sentence_and_crash():
    runner = JobRunner(max_workers=1)

    def bad(*, progress):
        raise KeystoreError("wrong password for keystore k.json")

    def crash(*, progress):
        raise RuntimeError("secret internals")

    a = runner.wait(runner.submit("x", "me", bad).id, 5)
    b = runner.wait(runner.submit("x", "me", crash).id, 5)
    assert (a.state, a.error) == ("failed", "wrong password for keystore k.json")
    assert b.state == "failed" and "secret" not in b.error and "server log" in b.error


def test_a_job_is_polled_through_another_ui_process(tmp_path):
    """Two runners on one state file, as two processes serving a hosted exchange's UI: the
    job one runs shows its progress, result and owner through the other."""
    path = tmp_path / "ui-state.sqlite3"
    here, there = JobRunner(state=UiState(path)), JobRunner(state=UiState(path))
    gate = threading.Event()

    def work(*, progress):
        progress("Pinning to IPFS", 5, 10)
        gate.wait(5)
        return {"cid": "bafy"}

    job = here.submit("publish", "me", work)
    deadline = time.monotonic() + 5
    seen = there.get(job.id, "me")
    while (seen is None or seen.step != "Pinning to IPFS") and time.monotonic() < deadline:
        time.sleep(0.01)
        seen = there.get(job.id, "me")
    assert seen is not None and (seen.state, seen.to_dict()["percent"]) == ("running", 50.0)
    assert there.get(job.id, "someone else") is None
    gate.set()
    finished = there.wait(job.id, 5)
    assert (finished.state, finished.result) == ("done", {"cid": "bafy"})


def test_a_job_whose_process_ended_reads_as_failed(tmp_path):
    state = UiState(tmp_path / "ui-state.sqlite3")
    gone = subprocess.Popen(["true"])  # a process that has ended
    gone.wait()
    state.rows(
        "INSERT INTO jobs (id, kind, owner, pid, state, step, result, started)"
        " VALUES ('j', 'publish', 'me', ?, 'running', 'Sealing', '{}', 0)",
        (gone.pid,),
    )
    job = JobRunner(state=state).get("j", "me")
    assert job is not None and job.state == "failed" and "start it again" in (job.error or "")


def test_a_job_of_an_earlier_process_with_the_same_pid_reads_as_failed(tmp_path):
    # After a restart, the new process may be given the pid of the one that ran the job.
    state = UiState(tmp_path / "ui-state.sqlite3")
    here = os.getpid()
    earlier = process_started(here) - 1
    state.rows(
        "INSERT INTO jobs (id, kind, owner, pid, pid_started, state, step, result, started)"
        " VALUES ('old', 'publish', 'me', ?, ?, 'running', 'Sealing', '{}', 0),"
        " ('mine', 'publish', 'me', ?, ?, 'running', 'Sealing', '{}', 0)",
        (here, earlier, here, process_started(here)),
    )
    runner = JobRunner(state=state)
    old, mine = runner.get("old", "me"), runner.get("mine", "me")
    assert old is not None and (old.state, old.error) == ("failed", ENDED_WITH_ITS_PROCESS)
    assert mine is not None and (mine.state, mine.error) == ("running", None)


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example",
        "/\\evil.example",
        "/\t/evil.example",
        "/\n/evil.example",
        "https://evil.example",
        "evil",
        "",
        None,
    ],
)
def test_local_path_refuses_what_a_browser_reads_as_another_site(target):
    assert local_path(target, "/wallet/") == "/wallet/"


def test_local_path_keeps_site_paths():
    assert local_path("/models/3?tab=try#x") == "/models/3?tab=try#x"


def test_served_models_membership_loads_nothing(tmp_path):
    served = ServedModels({5: tmp_path / "not-loadable"})
    assert 5 in served and 6 not in served  # the endpoint's 404 check, before any signature
    assert served._batchers == {}


def test_model_warmer_stop_waits_for_the_model_in_hand_and_loads_no_more(caplog):
    """`modex up` used to exit while the warm-up thread was inside `import torch`: torch's
    registration errors and a traceback printed after "stopped"."""
    from types import SimpleNamespace

    loading, release, loaded = threading.Event(), threading.Event(), []

    class SlowModels(dict):
        def __getitem__(self, model_id):
            loading.set()
            release.wait(10)
            loaded.append(model_id)
            raise RuntimeError("interpreter shutting down")  # what a torch import fails with

    warmer = ModelWarmer(SimpleNamespace(models=SlowModels({1: "a", 2: "b"}))).start()
    assert loading.wait(10)
    stopper = threading.Thread(target=warmer.stop)
    stopper.start()
    time.sleep(0.2)
    assert stopper.is_alive()  # stop() waits for the model in hand
    release.set()
    stopper.join(10)
    assert not stopper.is_alive()
    assert loaded == [1]  # and loads no other
    assert "could not preload" not in caplog.text  # a load cut short by stopping is no warning


def test_seller_metadata_of_the_wrong_json_type_renders_a_note():
    from app.helpers import metric_rows

    for card in (5, ["a"], {"x": 1}):  # was an AttributeError: the model page answered 500
        assert "not text" in render_card(card)
    for metrics in ("junk", [1, 2], 3):
        assert metric_rows(metrics) == [
            ("metrics", "not readable (the listing's metrics are not a JSON object)")
        ]


def test_an_api_call_without_an_unlocked_wallet_gets_a_json_401():
    """Pages redirect to the wallet page; the JSON API answers with a sentence and 401."""
    app = create_app({"TESTING": True})

    @app.route("/api/needs-signer")
    def needs_signer():
        return require_signer()

    reply = app.test_client().get("/api/needs-signer")
    assert reply.status_code == 401
    assert reply.get_json() == {
        "error": {
            "code": "needs_wallet",
            "message": "Unlock your wallet first (Wallet page); "
            "your session has none unlocked or it timed out.",
        }
    }
