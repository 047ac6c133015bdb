"""The service killed between storing a voucher and answering (issue 14 §3): never an answer
without the voucher on disk, never a voucher lost that was answered for, and the buyer goes on.

The service runs as a process (tests/ml/voucher_server.py) that SIGKILLs itself after the voucher
is stored and before the model runs ("after_accept"), or after the model answered and before the
answer is sent ("before_answer"). A client pays as `modex call --channel` does: the last amount
served plus the price, and after a 409 voucher_stale the amount the service holds plus the price.
"""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from ml import signing
from node.devchain import free_port
from node.procs import stop_process
from node.servicestore import open_service_store
from tests.ml.voucher_server import BUYER, CHAIN_ID, CHANNELS, MARKET, MODEL, PRICE

POINTS = ("after_accept", "before_answer")


def start(store_file, crash=None):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.ml.voucher_server", str(store_file), str(port)]
        + ([crash] if crash else []),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "serving"
    return proc, f"http://127.0.0.1:{port}"


def pay(url, amount):
    """POST one call paying ``amount`` in all on channel 1; the response, or None when the
    service died before answering."""
    body = signing.with_voucher(
        signing.sign_request(
            BUYER, model_id=MODEL, inputs=["hi"], chain_id=CHAIN_ID, verifying_contract=MARKET
        ),
        BUYER,
        chain_id=CHAIN_ID,
        channels_address=CHANNELS,
        channel_id=1,
        cumulative_amount=amount,
    )
    try:
        return httpx.post(url + "/v1/infer", json=body, timeout=30)
    except httpx.TransportError:
        return None


def held(store_file) -> int:
    with open_service_store(store_file) as store:
        highest = store.highest_voucher(1)
    return highest[0] if highest else 0


@pytest.mark.slow
def test_a_service_killed_between_accepting_and_answering_loses_no_voucher(tmp_path):
    store_file = tmp_path / "service.sqlite3"
    used, answered = 0, []  # the client's last served amount; every amount answered 200
    for point in (*POINTS, *POINTS):
        proc, url = start(store_file, crash=point)
        try:
            response = pay(url, used + PRICE)
            assert response is None  # killed: no answer ...
            assert proc.wait(10) == -9
            assert held(store_file) == used + PRICE  # ... and the voucher it took is on disk
        finally:
            stop_process(proc)
        proc, url = start(store_file)  # restarted: the buyer goes on from what it holds
        try:
            response = pay(url, used + PRICE)
            assert response.status_code == 409, response.text
            error = response.json()["error"]
            assert error["code"] == "voucher_stale"
            assert int(error["acceptedAmount"]) == used + PRICE
            used = int(error["acceptedAmount"])
            response = pay(url, used + PRICE)
            assert response.status_code == 200, response.text
            used += PRICE
            answered.append(used)
            assert held(store_file) >= used  # answered: stored first
        finally:
            stop_process(proc)
    # Each kill cost the buyer at most the one call it was making; every answer was paid for.
    assert held(store_file) == answered[-1] == 2 * len(answered) * PRICE
    with open_service_store(store_file) as store:
        ((channel, amount, _, claimed),) = store.vouchers_to_claim()
    assert (channel, amount, claimed) == (1, answered[-1], 0)
