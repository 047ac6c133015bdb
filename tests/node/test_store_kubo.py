"""The Kubo RPC store against a real daemon (js-ipfs 0.66.1, started by the ipfs_daemon fixture):
CIDs and blocks equal to Modex's, content moving both ways through CAR, and the failure cases."""

from __future__ import annotations

import io
import json
import socket
import time

import httpx
import pytest

from node.content.car import read_car
from node.content.cid import PROFILES, Profile, cid_of_file, cid_of_stream, cid_to_str, get_profile
from node.content.store import Store, open_store
from node.content.store.embedded import EmbeddedStore
from node.content.store.kubo import KuboStore
from node.errors import ContentNotFound, IntegrityError, StoreError
from tests.node.conftest import KiB, MiB, write_random

pytestmark = pytest.mark.kubo

C256 = 256 * KiB
SIZES = [0, 1, C256 - 1, C256, C256 + 1, MiB, MiB + 1, 174 * C256 + 1, 3 * MiB + 12345]
# js-ipfs's HTTP add has no option for the DAG width: it always uses Kubo's old default of 174.
JS_IPFS_WIDTH = 174


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("kubofiles")
    return [write_random(d / f"k{size}", size, seed=1000 + size) for size in SIZES]


@pytest.fixture
def kubo(ipfs_daemon):
    with KuboStore(ipfs_daemon.api_url, timeout=30, retries=2, backoff=0.05, find_timeout=1) as k:
        yield k


def _chunks(path, profile) -> int:
    return max(1, -(-path.stat().st_size // get_profile(profile).chunk_size))


def _daemon_profile(path, name) -> Profile:
    """What the daemon's importer can do for this profile: the same, except the width."""
    p = get_profile(name)
    if _chunks(path, name) <= JS_IPFS_WIDTH:
        return p
    return Profile(p.name + "@174", p.cid_version, p.raw_leaves, p.chunk_size, JS_IPFS_WIDTH)


def _blocks(car_bytes: bytes) -> dict[bytes, bytes]:
    _roots, blocks = read_car(io.BytesIO(car_bytes))
    return dict(blocks)


@pytest.mark.parametrize("name", list(PROFILES))
def test_daemon_add_gives_kubo_cids(kubo, files, name):
    for f in files:
        assert kubo.add(f, profile=name, only_hash=True) == cid_of_file(f, _daemon_profile(f, name))


@pytest.mark.parametrize("name", list(PROFILES))
def test_put_blocks_equal_daemon_blocks(kubo, files, tmp_path, name):
    """put through the daemon, then compare its `dag/export` with the embedded export."""
    local = EmbeddedStore(tmp_path / "local")
    for f in files[-3:]:
        cid = kubo.put(f, profile=name)
        assert cid == local.put(f, profile=name)
        theirs, ours = io.BytesIO(), io.BytesIO()
        kubo.export_car(cid, theirs)
        local.export_car(cid, ours)
        assert _blocks(theirs.getvalue()) == _blocks(ours.getvalue())
        assert kubo.get(cid).read() == f.read_bytes()


@pytest.mark.slow
def test_200mb_through_the_daemon(kubo, big_file):
    for name in PROFILES:
        assert kubo.add(big_file, profile=name, only_hash=True) == cid_of_file(
            big_file, _daemon_profile(big_file, name)
        )
    # unixfs-v1-2025 needs 1024 links per node, which js-ipfs's add cannot do: put imports
    # Modex's own blocks through dag/import instead, and the daemon then serves the same CID.
    want = cid_of_file(big_file, "unixfs-v1-2025")
    assert kubo.put(big_file, profile="unixfs-v1-2025") == want
    with open(big_file, "rb") as stream:  # a stream (as publish's sealer gives) is spooled first
        assert kubo.put(stream, profile="unixfs-v1-2025") == want
    size = 0
    with kubo.get(want) as stream:  # verified at the end of the stream
        for chunk in stream:
            size += len(chunk)
    assert size == big_file.stat().st_size


def test_embedded_to_daemon_and_back_through_car(kubo, files, tmp_path):
    src = EmbeddedStore(tmp_path / "src")
    f = files[-2]
    cid = src.put(f, profile="kubo-v1")
    car = io.BytesIO()
    src.export_car(cid, car)
    car.seek(0)
    assert kubo.import_car(car) == [cid]
    assert kubo.get(cid).read() == f.read_bytes()

    cid2 = kubo.put(files[-1], profile="kubo-v0")
    car2 = io.BytesIO()
    kubo.export_car(cid2, car2)
    car2.seek(0)
    dst = EmbeddedStore(tmp_path / "dst")
    assert dst.import_car(car2) == [cid2]
    assert dst.get(cid2).read() == files[-1].read_bytes()


def test_unknown_cid_is_content_not_found_quickly(kubo):
    unknown = "bafkreie7q3iidccmpvszul7kudcvvuavuo7u6gzlbobczuk5nqk3b4akba"
    start = time.monotonic()
    with pytest.raises(ContentNotFound, match=unknown):
        kubo.get(unknown)
    assert time.monotonic() - start < 5
    assert not kubo.has(unknown)
    with pytest.raises(ContentNotFound):
        kubo.export_car(unknown, io.BytesIO())


def test_version_and_interface(kubo, ipfs_daemon):
    assert "Version" in kubo.version()
    assert isinstance(kubo, Store)
    assert isinstance(open_store("kubo", api_url=ipfs_daemon.api_url), KuboStore)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_daemon_down_is_store_error_naming_the_url_after_bounded_retries():
    url = f"http://127.0.0.1:{_closed_port()}"
    store = KuboStore(url, timeout=2, retries=3, backoff=0.05)
    start = time.monotonic()
    with pytest.raises(StoreError, match=rf"{url}/api/v0/version after 4 attempt"):
        store.version()
    assert 0.3 <= time.monotonic() - start < 5  # 0.05 + 0.1 + 0.2 of backoff, then give up


def test_retries_then_succeeds():
    calls = []

    def handler(request):
        calls.append(request.url.path)
        if len(calls) < 3:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, json={"Version": "test"})

    store = KuboStore(
        "http://daemon", retries=3, backoff=0.01, transport=httpx.MockTransport(handler)
    )
    assert store.version() == {"Version": "test"}
    assert calls == ["/api/v0/version"] * 3


def test_wrong_bytes_from_a_daemon_are_detected():
    good = b"model bytes" * 1000
    cid = cid_of_stream(io.BytesIO(good), "kubo-v1")

    def handler(request):
        if request.url.path.endswith("/block/stat"):
            return httpx.Response(200, json={"Key": cid, "Size": 1})
        return httpx.Response(200, content=good[:-1] + b"X")

    store = KuboStore("http://daemon", transport=httpx.MockTransport(handler))
    with pytest.raises(IntegrityError, match="do not hash to it"):
        store.get(cid).read()


def _disagreeing_daemon(imported_root: str | None, posted: list[bytes]):
    """A daemon whose `add` answers a CID of another layout; `dag/import` records its body."""

    def handler(request):
        body = request.read()
        if request.url.path.endswith("/add"):
            return httpx.Response(
                200,
                text='{"Name":"file","Hash":"QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"}\n',
            )
        if request.url.path.endswith("/dag/import"):
            posted.append(body)
            root = imported_root or "bafkreie7q3iidccmpvszul7kudcvvuavuo7u6gzlbobczuk5nqk3b4akba"
            return httpx.Response(200, text=json.dumps({"Root": {"Cid": {"/": root}}}) + "\n")
        return httpx.Response(404, text="unexpected call")

    return httpx.MockTransport(handler)


def test_daemon_disagreeing_on_a_stream_imports_modex_blocks_from_a_spool(tmp_path):
    """A stream can be read once: put spools it while uploading, then imports our own blocks."""
    data = bytes(range(256)) * 5000  # 1.28 MB: several kubo-v0 chunks and a root node
    want = cid_of_stream(io.BytesIO(data), "kubo-v0")
    posted: list[bytes] = []
    store = KuboStore(
        "http://daemon", transport=_disagreeing_daemon(want, posted), spool_dir=tmp_path
    )
    assert store.put(io.BytesIO(data), profile="kubo-v0") == want
    car = posted[0]
    car = car[car.index(b"\r\n\r\n") + 4 : car.rindex(b"\r\n--")]  # the multipart file part
    roots, _ = read_car(io.BytesIO(car))
    assert [cid_to_str(r) for r in roots] == [want]
    local = EmbeddedStore(tmp_path / "local")
    assert local.import_car(io.BytesIO(car)) == [want]
    assert local.get(want).read() == data
    assert list(tmp_path.iterdir()) == [tmp_path / "local"]  # the spool file is gone


def test_daemon_importing_another_root_is_integrity_error(tmp_path):
    store = KuboStore("http://daemon", transport=_disagreeing_daemon(None, []), spool_dir=tmp_path)
    with pytest.raises(IntegrityError, match="imported roots"):
        store.put(io.BytesIO(b"not empty"), profile="kubo-v0")
    assert list(tmp_path.iterdir()) == []
