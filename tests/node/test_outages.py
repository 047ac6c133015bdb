"""IPFS daemon or chain RPC node down during publish, fetch and delivery.

Each failure ends after bounded retries in one error naming the endpoint; nothing is
half-written (no OUT folder, no listing without its pinned content, no key vault entry for
content that was never pinned); once the service is back, the same journey completes and the
key is delivered exactly once. The chain outage goes through a TCP proxy in front of anvil
that the test switches off and on (connections refused and cut, like a node that went away).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest
from modex_stack import buy_raw, make_stack, publish_model, write_model

from node.chain import Chain
from node.devchain import free_port
from node.errors import ChainError
from node.fetch import fetch_model
from node.publish import ListingInfo, list_prepared, prepare
from node.worker import KeyDelivery


class Proxy:
    """A TCP forwarder to 127.0.0.1:target that can be switched off (refuse + cut) and on."""

    def __init__(self, target_port: int):
        self.target = target_port
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> None:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(16)
        self._listener = s
        threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def down(self) -> None:
        with self._lock:
            if self._listener:
                # shutdown() wakes the thread blocked in accept(); close() alone would not on Linux
                with contextlib.suppress(OSError):
                    self._listener.shutdown(socket.SHUT_RDWR)
                self._listener.close()
                self._listener = None
            for c in self._conns:
                with contextlib.suppress(OSError):
                    c.shutdown(socket.SHUT_RDWR)
                c.close()
            self._conns.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nothing listens there


def test_ipfs_down_during_publish_and_fetch(tmp_path):
    stack = make_stack("embedded", tmp_path, delivery_window=3600)
    registry = stack.chain.registry.functions
    count = stack.chain.call(registry.modelCount())
    down = dead_url()
    folder = write_model(tmp_path / "m", size=300_000)

    # Publish with the daemon down: a clear error naming it; nothing listed, no key stored.
    stack.ipfs = down
    start = time.monotonic()
    code, _out, err = stack.cli("seller", "publish", str(folder), "--price", "0.01")
    assert code == 1 and down in err and "Traceback" not in err, err
    assert time.monotonic() - start < 30  # bounded retries
    assert stack.chain.call(registry.modelCount()) == count
    assert stack.vault().entries() == []

    # Back up: publish, buy, deliver. Then the buyer's daemon is down while fetching.
    stack.ipfs = "embedded"
    model_id = publish_model(stack, folder)
    buy_raw(stack, "buyer", model_id)
    assert (
        KeyDelivery(stack.chain, stack.signers["seller"], stack.vault(), tmp_path / "w.json")
        .poll()
        .delivered
    )
    stack.ipfs = down
    out_dir = tmp_path / "bought" / "m"
    code, _out, err = stack.cli("buyer", "fetch", str(model_id), "--out", str(out_dir))
    assert code == 1 and down in err and "Traceback" not in err, err
    assert not out_dir.parent.exists() or list(out_dir.parent.iterdir()) == []
    stack.ipfs = "embedded"
    code, _, err = stack.cli("buyer", "fetch", str(model_id), "--out", str(out_dir))
    assert code == 0, err


@pytest.mark.anvil
def test_chain_down_during_publish_delivery_and_fetch(tmp_path, anvil):
    stack = make_stack("anvil", tmp_path, anvil_url=anvil.url, delivery_window=3600)
    proxy = Proxy(anvil.port)
    proxy.up()
    config = stack.config("seller").replace(chain=proxy.url, rpc_retries=2)
    chain = Chain.from_config(config)
    chain.backoff = 0.1
    seller, buyer = stack.signers["seller"], stack.signers["buyer"]
    registry = stack.chain.registry.functions
    count = stack.chain.call(registry.modelCount())

    # Publish: content pinned, then the node goes away before list(): nothing is listed.
    prepared = prepare(
        write_model(tmp_path / "m"), stack.store(), stack.vault(), ListingInfo(name="m")
    )
    proxy.down()
    with pytest.raises(ChainError, match=proxy.url.replace(".", r"\.")):
        list_prepared(chain, seller, prepared, stack.vault(), price_wei=10**16)
    assert stack.chain.call(registry.modelCount()) == count
    assert stack.store().has(prepared.content_cid) and stack.store().has(prepared.metadata_cid)
    proxy.up()
    model_id = list_prepared(chain, seller, prepared, stack.vault(), price_wei=10**16).model_id

    # Delivery: the worker's pass fails while the node is away, then delivers exactly once.
    pid = buy_raw(stack, "buyer", model_id)
    worker = KeyDelivery(chain, seller, stack.vault(), tmp_path / "w.json")
    proxy.down()
    with pytest.raises(ChainError, match="cannot reach the chain node"):
        worker.poll()
    proxy.up()
    assert worker.poll().delivered == [pid]
    assert worker.poll().delivered == []
    assert len(stack.chain.events("KeyDelivered", purchaseId=pid)) == 1

    # Fetch: the node is away: a clear error, nothing written.
    proxy.down()
    out_dir = tmp_path / "bought" / "m"
    with pytest.raises(ChainError, match=proxy.url.replace(".", r"\.")):
        fetch_model(chain, buyer, stack.store(), model_id, out_dir)
    assert not out_dir.exists()
    proxy.up()
    assert fetch_model(chain, buyer, stack.store(), model_id, out_dir).out_dir == out_dir
    proxy.down()
