"""The embedded store: Kubo's blocks on disk, verified reads, pins, CAR v1, the gateway."""

from __future__ import annotations

import io
import random

import httpx
import pytest

from modex.cli import main
from node.content.car import encode_header, read_car, write_car
from node.content.cid import PROFILES, cid_of_file, cid_to_str, parse_cid, uvarint
from node.content.store import Store, open_store
from node.content.store.embedded import EmbeddedStore
from node.content.store.gateway import serve_gateway
from node.errors import ContentNotFound, IntegrityError, LocalStoreError, StoreError
from tests.node.conftest import KiB, MiB, write_random

UNKNOWN = "bafkreie7q3iidccmpvszul7kudcvvuavuo7u6gzlbobczuk5nqk3b4akba"


@pytest.fixture
def store(tmp_path):
    return EmbeddedStore(tmp_path / "store")


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return write_random(tmp_path_factory.mktemp("s") / "sample", 3 * MiB + 100 * KiB + 3, seed=42)


@pytest.mark.parametrize("name", list(PROFILES))
def test_put_get_round_trip_with_kubo_cids(store, sample, name):
    cid = store.put(sample, profile=name)
    assert cid == cid_of_file(sample, name)
    with store.get(cid) as stream:
        assert stream.read() == sample.read_bytes()
    assert store.has(cid) and cid in store.pins()


def test_streams_and_small_reads(store):
    data = random.Random(1).randbytes(600 * KiB)
    cid = store.put(io.BytesIO(data), profile="kubo-v0")
    stream = store.get(cid)
    parts = []
    while chunk := stream.read(1000):
        parts.append(chunk)
    assert b"".join(parts) == data
    assert b"".join(iter(store.get(cid))) == data
    assert isinstance(store, Store) and isinstance(
        open_store("embedded", root=store.root), EmbeddedStore
    )


def test_blocks_are_deduplicated_and_named_by_multihash(store):
    data = b"\0" * (2 * MiB)  # two identical leaves
    cid = store.put(io.BytesIO(data))
    files = sorted(p for p in store.blocks_dir.rglob("*.data"))
    assert len(files) == 2  # one leaf + the root
    assert all(p.name.startswith("CIQ") for p in files)  # base32 of 0x12 0x20 ..., as Kubo's flatfs
    assert store.get(cid).read() == data


def test_flipped_block_on_disk_is_a_local_error_naming_the_cid_and_set_aside(store, sample):
    """Blocks are verified before they are written: one that fails later is this disk's fault
    (LocalStoreError, not IntegrityError); it is set aside so a re-import can heal it."""
    cid = store.put(sample, profile="kubo-v1")
    backup = io.BytesIO()
    store.export_car(cid, backup)
    leaf = max(store.blocks_dir.rglob("*.data"), key=lambda p: p.stat().st_size)
    raw = bytearray(leaf.read_bytes())
    raw[1234] ^= 0x01
    leaf.write_bytes(bytes(raw))
    with pytest.raises(
        LocalStoreError,
        match=r"block b\w+ in the embedded store at .* no longer "
        r"hash to its CID.*re-import the content",
    ) as exc:
        store.get(cid).read()
    assert not isinstance(exc.value, IntegrityError)
    assert (store.corrupt_dir / leaf.name).read_bytes() == bytes(raw) and not leaf.exists()
    with pytest.raises(ContentNotFound, match="a corrupt copy was set aside"):
        store.export_car(cid, io.BytesIO())
    assert not store.has(cid)
    backup.seek(0)
    store.import_car(backup)
    assert store.get(cid).read() == sample.read_bytes()  # the re-import healed it


def test_a_store_with_a_source_fetches_missing_and_corrupt_blocks_from_it(tmp_path, store, sample):
    from node.content.store.gateway import GatewaySource, serve_gateway

    cid = store.put(sample)
    data = store.get(cid).read()
    with serve_gateway(store) as gateway:
        mine = EmbeddedStore(tmp_path / "mine", source=GatewaySource(gateway.url))
        assert not mine.has(cid)  # has() looks at this disk only
        assert mine.get(cid).read() == data  # fetched, verified, cached
        assert mine.has(cid) and mine.repair(cid) == []
        leaf = max(mine.blocks_dir.rglob("*.data"), key=lambda p: p.stat().st_size)
        good = leaf.read_bytes()
        leaf.write_bytes(good[:-1])  # half-written by a crash
        assert mine.get(cid).read() == data and leaf.read_bytes() == good
        leaf.write_bytes(b"rot" + good[3:])
        assert len(mine.repair(cid)) == 1 and leaf.read_bytes() == good
        missing = EmbeddedStore(tmp_path / "other", source=GatewaySource(gateway.url))
        with pytest.raises(ContentNotFound, match="is not at the IPFS gateway"):
            missing.get(UNKNOWN)
    with pytest.raises(StoreError, match="cannot reach the IPFS gateway"):
        EmbeddedStore(tmp_path / "third", source=GatewaySource(gateway.url)).get(cid)


def test_unknown_and_malformed_cids(store):
    with pytest.raises(ContentNotFound, match=UNKNOWN):
        store.get(UNKNOWN)
    assert not store.has(UNKNOWN)
    with pytest.raises(ContentNotFound):
        store.pin(UNKNOWN)
    with pytest.raises(StoreError, match="not a CID"):
        store.get("not-a-cid")


def test_missing_child_block(store, sample):
    cid = store.put(sample, profile="kubo-v1")
    victim = min(store.blocks_dir.rglob("*.data"), key=lambda p: p.stat().st_size)
    victim.unlink()  # some leaf
    assert not store.has(cid)
    with pytest.raises(ContentNotFound):
        store.get(cid).read()


def test_car_round_trip_between_stores(tmp_path, store, sample):
    cid = store.put(sample, profile="kubo-v0")
    car = io.BytesIO()
    written = store.export_car(cid, car)
    assert written == len(car.getvalue())
    car.seek(0)
    roots, blocks = read_car(car)
    blocks = list(blocks)
    assert roots == [parse_cid(cid)] and blocks[0][0] == parse_cid(cid)  # root first
    other = EmbeddedStore(tmp_path / "other")
    car.seek(0)
    assert other.import_car(car) == [cid]
    assert other.get(cid).read() == sample.read_bytes() and cid in other.pins()
    again = io.BytesIO()
    other.export_car(cid, again)
    assert again.getvalue() == car.getvalue()  # same blocks, same order


def test_corrupt_or_truncated_car_is_refused(tmp_path, store, sample):
    cid = store.put(sample)
    car = io.BytesIO()
    store.export_car(cid, car)
    raw = bytearray(car.getvalue())
    flipped = bytearray(raw)
    flipped[-100] ^= 0x80
    with pytest.raises(IntegrityError, match="corrupt"):
        EmbeddedStore(tmp_path / "a").import_car(io.BytesIO(bytes(flipped)))
    with pytest.raises(IntegrityError, match="truncated"):
        EmbeddedStore(tmp_path / "b").import_car(io.BytesIO(bytes(raw[:-10])))
    with pytest.raises(IntegrityError, match="not a CAR"):
        EmbeddedStore(tmp_path / "c").import_car(io.BytesIO(b"\x05hello"))
    # A CAR whose blocks are fine but lack part of the root's DAG cannot be pinned.
    _, blocks = read_car(io.BytesIO(bytes(raw)))
    partial = io.BytesIO()
    write_car([parse_cid(cid)], list(blocks)[:-1], partial)
    partial.seek(0)
    with pytest.raises(ContentNotFound):
        EmbeddedStore(tmp_path / "d").import_car(partial)


def test_car_header_is_dag_cbor():
    root = parse_cid("bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku")
    header = encode_header([root])
    assert header[:8] == b"\xa2eroots\x81"[:8] and header.endswith(b"gversion\x01")
    assert read_car(io.BytesIO(uvarint(len(header)) + header))[0] == [root]


def test_gateway(store, sample):
    cid = store.put(sample)
    with serve_gateway(store) as gw, httpx.Client(base_url=gw.url, timeout=10) as http:
        r = http.get(f"/ipfs/{cid}")
        assert r.status_code == 200 and r.content == sample.read_bytes()
        assert r.headers["etag"] == f'"{cid}"' and r.headers["x-ipfs-path"] == f"/ipfs/{cid}"
        v0 = cid_to_str(parse_cid(store.put(io.BytesIO(b"abc"), profile="kubo-v0")))
        assert http.get(f"/ipfs/{v0}/").content == b"abc"
        assert http.head(f"/ipfs/{cid}").status_code == 200
        assert http.get(f"/ipfs/{UNKNOWN}").status_code == 404
        assert http.get("/ipfs/not-a-cid").status_code == 400
        assert http.post(f"/ipfs/{cid}").status_code == 405
        assert http.get("/elsewhere").status_code == 404
        # One verified block, as trustless IPFS gateways serve it (what GatewaySource reads).
        root = parse_cid(cid)
        r = http.get(f"/ipfs/{cid}?format=raw")
        assert r.status_code == 200 and r.content == store.get_block(root)
        assert r.headers["content-type"] == "application/vnd.ipld.raw"
        assert (
            http.get(f"/ipfs/{cid}", headers={"Accept": "application/vnd.ipld.raw"}).content
            == r.content
        )
        assert http.get(f"/ipfs/{UNKNOWN}?format=raw").status_code == 404
        store.block_path(root).write_bytes(b"rot" + r.content[3:])
        r = http.get(f"/ipfs/{cid}?format=raw")  # its own copy rotted: not served
        assert r.status_code == 502 and "unusable" in r.text


def test_cli_store_put_get_car(tmp_path, sample, capsys):
    root = str(tmp_path / "cli-store")
    assert main(["store", "put", str(sample), "--root", root, "--profile", "kubo-v1"]) == 0
    cid = capsys.readouterr().out.strip()
    assert cid == cid_of_file(sample, "kubo-v1")
    out = tmp_path / "out.bin"
    assert main(["store", "get", cid, str(out), "--root", root]) == 0
    assert out.read_bytes() == sample.read_bytes()
    car = tmp_path / "x.car"
    assert main(["store", "export-car", cid, str(car), "--root", root]) == 0
    assert main(["store", "import-car", str(car), "--root", str(tmp_path / "other")]) == 0
    assert capsys.readouterr().out.strip() == cid
    assert main(["store", "get", UNKNOWN, str(tmp_path / "none"), "--root", root]) == 1
    assert "not in the embedded store" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()


def test_cli_store_bad_paths_are_one_sentence(tmp_path, sample, capsys):
    root = str(tmp_path / "cli-store")
    assert main(["store", "put", str(sample), "--root", root]) == 0
    cid = capsys.readouterr().out.strip()
    folder = tmp_path / "folder"
    folder.mkdir()
    for action in ("get", "export-car"):
        for out, needle in ((folder, "is a folder"), (tmp_path / "no" / "x", "cannot write")):
            assert main(["store", action, cid, str(out), "--root", root]) == 1
            err = capsys.readouterr().err
            assert needle in err and len(err.strip().splitlines()) == 1, err
    assert list(folder.iterdir()) == []
    assert main(["store", "import-car", str(tmp_path / "missing.car"), "--root", root]) == 1
    err = capsys.readouterr().err
    assert "cannot read" in err and "missing.car" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("port", ["99999", "-1"])
def test_cli_gateway_port_out_of_range_is_a_usage_error(tmp_path, port, capsys):
    """Port 99999 used to be served on another port (99999 - 65536) without a word."""
    with pytest.raises(SystemExit) as exc:
        main(["store", "gateway", "--port", port, "--root", str(tmp_path)])
    assert exc.value.code == 2 and "0..65535" in capsys.readouterr().err
