"""Deterministic tar (docs/formats.md §3 plaintext) and the safe streaming extractor."""

import hashlib
import io
import os
import tarfile

import pytest
from content_helpers import make_model

from node.content.manifest import build_manifest
from node.content.tarball import extract_tar, tar_size, write_tar
from node.errors import IntegrityError, ManifestError

LONG = "deep/" + "n" * 120 + "/weights-\u00e9\u00e8.safetensors"


def tar_bytes(model_dir):
    m = build_manifest(model_dir)
    out = io.BytesIO()
    n = write_tar(model_dir, m, out)
    assert n == len(out.getvalue()) == tar_size(m)
    return m, out.getvalue()


@pytest.fixture
def files():
    return {
        "config.json": b'{"a":1}',
        "model.safetensors": bytes(range(256)) * 40,
        "tok/vocab.txt": b"x\n" * 300,
        "empty": b"",
        LONG: b"long name",
    }


def test_same_bytes_whatever_mtime_mode_and_owner(tmp_path, files):
    a = make_model(tmp_path / "a", files)
    b = make_model(tmp_path / "b", files)
    for i, p in enumerate(sorted(b.rglob("*"))):
        if p.is_file():
            os.chmod(p, 0o600 if i % 2 else 0o755)
            os.utime(p, (1_000_000 + i, 2_000_000_000 + i))
    _, ta = tar_bytes(a)
    _, tb = tar_bytes(b)
    assert ta == tb
    # Frozen known answer for this directory: a change to the tar layout shows up here.
    assert hashlib.sha256(ta).hexdigest() == KNOWN_TAR_SHA256


KNOWN_TAR_SHA256 = "8983b97c46773a2dfe4532ff9e4f8c63640efc91e6f61edb87388ecc8702a573"


def test_layout_read_by_python_tarfile(tmp_path, files):
    root = make_model(tmp_path / "m", files)
    m, data = tar_bytes(root)
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        members = tf.getmembers()
        assert [t.name for t in members] == [f["path"] for f in m.files]
        for t in members:
            assert (t.mode, t.uid, t.gid, t.uname, t.gname, t.mtime) == (0o644, 0, 0, "", "", 0)
            assert t.isreg()
            assert tf.extractfile(t).read() == files[t.name]
    assert len(data) % 10240 == 0


def test_extract_returns_manifest_and_matches(tmp_path, files):
    root = make_model(tmp_path / "m", files)
    m, data = tar_bytes(root)
    got = extract_tar(io.BytesIO(data), tmp_path / "out", expected_hash=m.model_hash)
    assert got == m
    for rel, content in files.items():
        assert (tmp_path / "out" / rel).read_bytes() == content


def test_extract_into_existing_empty_dir_ok_nonempty_refused(tmp_path, files):
    root = make_model(tmp_path / "m", files)
    m, data = tar_bytes(root)
    (tmp_path / "empty").mkdir()
    assert extract_tar(io.BytesIO(data), tmp_path / "empty") == m
    with pytest.raises(ManifestError, match="not an empty directory"):
        extract_tar(io.BytesIO(data), tmp_path / "empty")


def test_wrong_expected_hash_leaves_nothing(tmp_path, files):
    root = make_model(tmp_path / "m", files)
    _, data = tar_bytes(root)
    with pytest.raises(IntegrityError, match="model hash mismatch"):
        extract_tar(io.BytesIO(data), tmp_path / "out", expected_hash=b"\1" * 32)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_file_changed_since_hashing(tmp_path, files):
    root = make_model(tmp_path / "m", files)
    m = build_manifest(root)
    (root / "config.json").write_bytes(b'{"a":2}')  # same size, other bytes
    with pytest.raises(IntegrityError, match="config.json: the file changed"):
        write_tar(root, m, io.BytesIO())
    (root / "config.json").write_bytes(b'{"a":1}!')  # longer
    with pytest.raises(IntegrityError, match="config.json"):
        write_tar(root, m, io.BytesIO())


def test_file_replaced_by_symlink_after_hashing(tmp_path, files):
    root = make_model(tmp_path / "m", files)
    m = build_manifest(root)
    (tmp_path / "elsewhere").write_bytes(b'{"a":1}')
    (root / "config.json").unlink()
    (root / "config.json").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ManifestError, match="symlinks are refused"):
        write_tar(root, m, io.BytesIO())


def crafted(entries):
    """A tar built by Python's tarfile with hostile entries (what an attacker could upload)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, data in entries:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                info.linkname = data.decode()
                tf.addfile(info)
            else:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return out.getvalue()


@pytest.mark.parametrize(
    "entries, message",
    [
        ([("../evil", tarfile.REGTYPE, b"x")], "'..'"),
        ([("a/../../evil", tarfile.REGTYPE, b"x")], "'..'"),
        ([("/etc/evil", tarfile.REGTYPE, b"x")], "absolute"),
        ([("link", tarfile.SYMTYPE, b"/etc/passwd")], "symlink"),
        ([("hard", tarfile.LNKTYPE, b"/etc/passwd")], "hard link"),
        ([("dev", tarfile.CHRTYPE, b"")], "character device"),
        ([("fifo", tarfile.FIFOTYPE, b"")], "FIFO"),
        ([("a", tarfile.REGTYPE, b"1"), ("a", tarfile.REGTYPE, b"2")], "twice"),
        ([("a", tarfile.REGTYPE, b"1"), ("a/b", tarfile.REGTYPE, b"2")], "clashes"),
    ],
)
def test_hostile_entries_refused_and_nothing_left(tmp_path, entries, message):
    with pytest.raises(ManifestError, match=message):
        extract_tar(io.BytesIO(crafted(entries)), tmp_path / "out")
    assert list(tmp_path.iterdir()) == []
    assert not (tmp_path.parent / "evil").exists()


def test_symlink_then_write_through_it_refused(tmp_path):
    # The classic two-step escape: a symlink dir, then a file "under" it.
    data = crafted(
        [("d", tarfile.SYMTYPE, str(tmp_path).encode()), ("d/pwned", tarfile.REGTYPE, b"x")]
    )
    with pytest.raises(ManifestError):
        extract_tar(io.BytesIO(data), tmp_path / "out")
    assert not (tmp_path / "pwned").exists()


def test_corrupt_truncated_and_trailing_data(tmp_path, files):
    root = make_model(tmp_path / "m", files)
    _, data = tar_bytes(root)
    flipped = bytearray(data)
    flipped[10] ^= 1  # inside the first header's name
    with pytest.raises(IntegrityError, match="checksum"):
        extract_tar(io.BytesIO(bytes(flipped)), tmp_path / "o1")
    with pytest.raises(IntegrityError, match="truncated"):
        extract_tar(io.BytesIO(data[:1500]), tmp_path / "o2")
    with pytest.raises(IntegrityError, match="after the end"):
        extract_tar(io.BytesIO(data + b"junk"), tmp_path / "o3")
    with pytest.raises(IntegrityError, match="empty stream"):
        extract_tar(io.BytesIO(b""), tmp_path / "o4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_gnu_tar_lists_it(tmp_path, files):
    import subprocess

    root = make_model(tmp_path / "m", files)
    m, data = tar_bytes(root)
    (tmp_path / "t.tar").write_bytes(data)
    out = subprocess.run(
        ["tar", "-tf", str(tmp_path / "t.tar")], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out == [f["path"] for f in m.files]
