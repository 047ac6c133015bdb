"""The models a node serves (node/served_dirs.py): model id -> folder, kept in one file that every
process of `modex up`'s UI reads and writes, and that outlives a restart of the local chain."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import stat
import threading
from pathlib import Path

import pytest

from node.config import Config
from node.errors import ConfigError
from node.served_dirs import ServedModelDirs


def test_set_get_iterate_delete(tmp_path):
    path = tmp_path / "run" / "served-31337.json"
    models = ServedModelDirs(path)
    assert len(models) == 0 and 3 not in models and list(models) == []  # no file: empty
    assert not path.exists()

    models[3] = tmp_path / "sentiment"
    models[10] = str(tmp_path / "spam")
    models[3] = tmp_path / "sentiment-v2"  # replaced
    assert models[3] == tmp_path / "sentiment-v2" and isinstance(models[10], Path)
    assert sorted(models) == [3, 10] and len(models) == 2 and 10 in models
    assert "3" not in models and models.get(4) is None
    assert dict(models.items()) == {3: tmp_path / "sentiment-v2", 10: tmp_path / "spam"}

    del models[10]
    with pytest.raises(KeyError):
        del models[10]
    with pytest.raises(TypeError):
        models["7"] = tmp_path  # type: ignore[index]
    assert dict(models) == {3: tmp_path / "sentiment-v2"}
    assert json.loads(path.read_text()) == {
        "version": 1,
        "models": {"3": str(tmp_path / "sentiment-v2")},
    }
    assert dict(ServedModelDirs(path)) == {3: tmp_path / "sentiment-v2"}  # as a restart reads it


def test_a_relative_folder_is_stored_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    models = ServedModelDirs(tmp_path / "served.json")
    models[1] = Path("models") / "demo"
    assert models[1] == tmp_path / "models" / "demo"


def test_two_instances_on_one_file_see_each_others_writes(tmp_path):
    path = tmp_path / "served.json"
    one, two = ServedModelDirs(path), ServedModelDirs(path)
    assert dict(one) == {} and dict(two) == {}  # both have read (no file yet)
    one[1] = tmp_path / "a"
    assert two[1] == tmp_path / "a"  # read again: the file changed since its last read
    two[2] = tmp_path / "b"  # starts from the file, not from what it read before
    assert dict(one) == {1: tmp_path / "a", 2: tmp_path / "b"}
    del one[1]
    assert 1 not in two and list(two) == [2]


def _add_ids(path: str, first: int, count: int) -> None:
    models = ServedModelDirs(path)
    for model_id in range(first, first + count):
        models[model_id] = f"/models/{model_id}"


def test_concurrent_writers_in_two_processes_and_threads_lose_nothing(tmp_path):
    path = tmp_path / "served.json"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_add_ids, args=(str(path), first, 50)) for first in (1, 101)]
    for p in procs:
        p.start()
    threads = [threading.Thread(target=_add_ids, args=(path, 1001, 20))]
    threads.append(threading.Thread(target=_add_ids, args=(path, 2001, 20)))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    expected = [*range(1, 51), *range(101, 151), *range(1001, 1021), *range(2001, 2021)]
    assert sorted(ServedModelDirs(path)) == expected


def test_file_is_private_and_written_atomically(tmp_path):
    path = tmp_path / "served.json"
    models = ServedModelDirs(path)
    for model_id in range(5):
        models[model_id] = tmp_path / str(model_id)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["served.json", "served.json.lock"]


def test_a_bad_file_is_never_overwritten(tmp_path, caplog):
    path = tmp_path / "served.json"
    models = ServedModelDirs(path)
    models[1] = tmp_path / "a"
    assert dict(models) == {1: tmp_path / "a"}
    path.write_text('{"version": 1, "models": {"2": ')  # a bad hand edit
    with caplog.at_level(logging.WARNING, logger="node.served_dirs"):
        assert dict(models) == {1: tmp_path / "a"}  # a running UI keeps what it read
        assert 1 in models
    assert sum("is not a served-models file" in r.getMessage() for r in caplog.records) == 1
    with pytest.raises(ConfigError, match="repair it .* or move it aside"):
        models[2] = tmp_path / "b"
    with pytest.raises(ConfigError, match="is not a served-models file"):
        ServedModelDirs(path).check()  # what `modex up` runs at start
    assert path.read_text() == '{"version": 1, "models": {"2": '
    assert dict(ServedModelDirs(path)) == {}  # an instance that never read a good file


def test_the_file_lives_beside_the_worker_state_tied_to_the_chain(tmp_path):
    config = Config(data_dir=tmp_path)
    assert config.served_models_path(5) == tmp_path / "served-5.json"
    run = config.replace(index_db=tmp_path / "chain" / "index.sqlite3")
    assert run.served_models_path(31337) == tmp_path / "chain" / "served-31337.json"
    assert run.served_models_path(31337).parent == run.worker_state_path(31337).parent
