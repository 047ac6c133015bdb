"""Model hash (docs/formats.md §2): known answers, ordering, parallel hashing, refusals."""

import hashlib
import json
import os
import socket

import pytest
from content_helpers import make_model

from node.content.manifest import (
    build_manifest,
    check_model_hash,
    manifest_from_json,
    model_hash,
    refuse_pickles,
)
from node.errors import IntegrityError, ManifestError


def test_known_answer_is_sha256_of_canonical_json(tmp_path):
    make_model(tmp_path, {"config.json": b"{}", "weights/model.safetensors": b"abc"})
    m = build_manifest(tmp_path)
    # Independently built canonical text, exactly as the design page spells it.
    expected_text = (
        '{"files":[{"path":"config.json","sha256":"'
        + hashlib.sha256(b"{}").hexdigest()
        + '","size":2},{"path":"weights/model.safetensors","sha256":"'
        + hashlib.sha256(b"abc").hexdigest()
        + '","size":3}],"version":1}'
    )
    assert m.canonical_bytes() == expected_text.encode()
    assert m.model_hash == hashlib.sha256(expected_text.encode()).digest()
    assert m.model_hash_hex == "0x" + hashlib.sha256(expected_text.encode()).hexdigest()
    assert model_hash(tmp_path) == m.model_hash


def test_known_answer_frozen(tmp_path):
    make_model(tmp_path, {"a": b"", "b/c.txt": b"hello\n"})
    m = build_manifest(tmp_path)
    text = m.canonical_bytes().decode()
    assert text == (
        '{"files":[{"path":"a","sha256":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",'
        '"size":0},{"path":"b/c.txt","sha256":"5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03",'
        '"size":6}],"version":1}'
    )
    # Frozen known answer (sha256 of the text above): a change to the format shows up here.
    assert m.model_hash_hex == "0xf3afa132ee67b2aeabd56d9e418cdbcfc660b546eb96e8a9ec18154dac089a6f"


def test_sorted_by_utf8_bytes_not_by_python_str_or_locale(tmp_path):
    # U+FF21 (3 UTF-8 bytes, EF BC A1) sorts after U+00E9 (C3 A9) and after "Z"; "B" < "a".
    names = ["a", "B", "Z", "\u00e9", "\uff21", "a/b", "a-b"]
    files = {f"d{i}/" + n if n == "a/b" else n: n.encode() for i, n in enumerate(names)}
    files.pop("d5/a/b")
    files["x/a/b"] = b"1"
    make_model(tmp_path, files)
    paths = [f["path"] for f in build_manifest(tmp_path).files]
    assert paths == sorted(paths, key=lambda p: p.encode("utf-8"))
    assert paths.index("B") < paths.index("Z") < paths.index("a") < paths.index("\u00e9")
    assert paths.index("\u00e9") < paths.index("\uff21")


def test_parallel_equals_serial_and_progress_counts_bytes(tmp_path):
    rng = __import__("random").Random(7)
    make_model(tmp_path, {f"f{i}.bin": rng.randbytes(rng.randrange(0, 3 << 20)) for i in range(9)})
    seen = []
    parallel = build_manifest(tmp_path, workers=4, progress=seen.append)
    serial = build_manifest(tmp_path, workers=1)
    assert parallel == serial
    assert sum(seen) == parallel.total_size
    for f in serial.files:
        assert f["sha256"] == hashlib.sha256((tmp_path / f["path"]).read_bytes()).hexdigest()


def test_symlink_refused(tmp_path):
    make_model(tmp_path, {"ok.txt": b"x"})
    (tmp_path / "link").symlink_to(tmp_path / "ok.txt")
    with pytest.raises(ManifestError, match="link: symlinks are refused"):
        build_manifest(tmp_path)


def test_symlinked_directory_refused(tmp_path, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret").write_bytes(b"s")
    make_model(tmp_path, {"ok.txt": b"x"})
    (tmp_path / "sub").symlink_to(outside)
    with pytest.raises(ManifestError, match="sub: symlinks are refused"):
        build_manifest(tmp_path)


def test_fifo_and_socket_refused(tmp_path):
    make_model(tmp_path, {"ok.txt": b"x"})
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(ManifestError, match="pipe: not a regular file"):
        build_manifest(tmp_path)
    os.unlink(tmp_path / "pipe")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(tmp_path / "sock"))
        with pytest.raises(ManifestError, match="sock: not a regular file"):
            build_manifest(tmp_path)


def test_non_utf8_name_refused(tmp_path):
    make_model(tmp_path, {"ok.txt": b"x"})
    with open(os.path.join(os.fsencode(tmp_path), b"bad\xff.txt"), "wb") as f:
        f.write(b"x")
    with pytest.raises(ManifestError, match="not valid UTF-8"):
        build_manifest(tmp_path)


def test_empty_dir_and_missing_dir_refused(tmp_path):
    with pytest.raises(ManifestError, match="no regular files"):
        build_manifest(tmp_path)
    with pytest.raises(ManifestError, match="not a directory"):
        build_manifest(tmp_path / "nope")


@pytest.mark.parametrize("bad_path", ["../x", "/etc/passwd", "a/../../x", "a//b", "./a", "a/", ""])
def test_manifest_json_refuses_escaping_paths(bad_path):
    doc = {"files": [{"path": bad_path, "size": 1, "sha256": "0" * 64}], "version": 1}
    with pytest.raises(ManifestError):
        manifest_from_json(json.dumps(doc))


def test_manifest_json_round_trip_and_expected_hash(tmp_path):
    make_model(tmp_path, {"a": b"1", "b/c": b"22"})
    m = build_manifest(tmp_path)
    again = manifest_from_json(m.canonical_bytes(), expected_hash=m.model_hash_hex)
    assert again == m
    with pytest.raises(IntegrityError, match="model hash mismatch"):
        manifest_from_json(m.canonical_bytes(), expected_hash=b"\0" * 32)
    with pytest.raises(IntegrityError):
        check_model_hash(m, "0x" + "11" * 32)


@pytest.mark.parametrize(
    "doc, message",
    [
        ({"files": [], "version": 2}, "version"),
        ({"files": [{"path": "a", "size": -1, "sha256": "0" * 64}], "version": 1}, "size"),
        ({"files": [{"path": "a", "size": 1, "sha256": "XY"}], "version": 1}, "sha256"),
        ({"files": [{"path": "a", "size": 1, "sha256": "0" * 64}] * 2, "version": 1}, "twice"),
        (
            {
                "files": [
                    {"path": "a", "size": 1, "sha256": "0" * 64},
                    {"path": "a/b", "size": 1, "sha256": "0" * 64},
                ],
                "version": 1,
            },
            "under it",
        ),
    ],
)
def test_manifest_json_validation(doc, message):
    with pytest.raises(ManifestError, match=message):
        manifest_from_json(doc)


def test_refuse_pickles_names_files_and_says_safetensors(tmp_path):
    make_model(tmp_path, {"pytorch_model.bin": b"x", "model.safetensors": b"y", "sub/w.PT": b"z"})
    m = build_manifest(tmp_path)
    with pytest.raises(ManifestError, match="pytorch_model.bin, sub/w.PT.*safetensors"):
        refuse_pickles(m)
    (tmp_path / "pytorch_model.bin").unlink()
    (tmp_path / "sub/w.PT").unlink()
    refuse_pickles(build_manifest(tmp_path))
