"""A voucher-taking inference service as a process of its own, for the kill tests
(test_vouchers_crash.py): the real endpoint and SQLite ServiceStore, a stand-in model that
answers at once and a stand-in channel (channel 1, BUYER's, for model 7), so that the process
starts in a moment. ``crash`` SIGKILLs it at the endpoint's crash point.

    python -m tests.ml.voucher_server STORE_FILE PORT [CRASH_POINT]
"""

from __future__ import annotations

import os
import signal
import sys

from eth_account import Account
from werkzeug.serving import make_server

from ml.endpoint import InferenceService, create_app
from ml.payment import ChannelBook
from node.channels import ChannelState
from node.servicestore import open_service_store

CHAIN_ID = 31337
MARKET = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
CHANNELS = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
BUYER = Account.from_key("0x" + "42" * 32)
MODEL, PRICE, DEPOSIT = 7, 1000, 10**6
EXPIRES = 4_000_000_000


class Instant:
    """A model that answers every text at once."""

    labels = ("negative", "positive")

    def predict(self, texts):
        return [{"label": "positive", "score": 1.0, "truncated": False} for _ in texts]


def crash_at(point: str | None):
    def crash(at: str) -> None:
        if at == point:
            os.kill(os.getpid(), signal.SIGKILL)

    return crash


def main(store_file: str, port: str, point: str | None = None) -> None:
    channel = ChannelState(1, MODEL, BUYER.address, "0x" + "00" * 20, DEPOSIT, 0, EXPIRES, True)
    service = InferenceService(
        {MODEL: Instant()},
        has_license=lambda model_id, address: False,
        chain_id=CHAIN_ID,
        verifying_contract=MARKET,
        store=open_service_store(store_file),
        channels=ChannelBook({1: channel}.get, lambda model_id: PRICE),
        channels_address=CHANNELS,
        crash=crash_at(point),
    )
    server = make_server("127.0.0.1", int(port), create_app(service), threaded=True)
    print("serving", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(*sys.argv[1:])
