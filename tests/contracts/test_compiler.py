"""node.compiler's failure paths: each is one CompileError sentence, and a damaged cache is rebuilt."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from node import compiler, paths
from node.errors import CompileError

GOOD = """// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;
contract Tiny { uint256 public x; function set(uint256 v) external { x = v; } }
"""


@pytest.fixture
def project():
    # node.compiler names sources relative to the repository, so the temp folder lives inside it.
    paths.BUILD_DIR.mkdir(exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="compiler-test-", dir=paths.BUILD_DIR))
    (tmp / "src").mkdir()
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp)


def test_a_damaged_cache_entry_is_compiled_again(project):
    (project / "src" / "Tiny.sol").write_text(GOOD)
    first = compiler.compile_contracts([project / "src"], build_dir=project / "out")
    (cache,) = (project / "out").glob("*.json")
    cache.write_text(cache.read_text()[:100])  # cut short: not JSON any more
    again = compiler.compile_contracts([project / "src"], build_dir=project / "out")
    assert again == first and set(again) == {"Tiny"}
    assert [p.name for p in (project / "out").iterdir()] == [
        cache.name
    ]  # rewritten, nothing left beside it


def test_a_syntax_error_names_the_file_and_line(project):
    (project / "src" / "Broken.sol").write_text(GOOD.replace("x = v;", "x = ;"))
    with pytest.raises(CompileError) as info:
        compiler.compile_contracts([project / "src"], build_dir=project / "out")
    assert "ParserError" in str(info.value) and "Broken.sol:3:" in str(info.value)
    assert not (project / "out").exists()


def test_a_missing_solc_wrapper_says_how_to_install_it(project, monkeypatch):
    (project / "src" / "Tiny.sol").write_text(GOOD)
    monkeypatch.setattr(paths, "SOLC_WRAPPER", project / "no-such-solc")
    with pytest.raises(CompileError) as info:
        compiler.compile_contracts([project / "src"], build_dir=project / "out")
    assert str(project / "no-such-solc") in str(info.value) and "bash tools/setup.sh" in str(
        info.value
    )


def test_a_cache_that_cannot_be_written_leaves_no_temporary_file(project):
    (project / "src" / "Tiny.sol").write_text(GOOD)
    compiler.compile_contracts([project / "src"], build_dir=project / "out")
    (cache,) = (project / "out").glob("*.json")
    cache.unlink()
    cache.mkdir()  # a folder where the cache file goes: neither readable as JSON nor replaceable
    with pytest.raises(OSError):
        compiler.compile_contracts([project / "src"], build_dir=project / "out")
    assert [p.name for p in (project / "out").iterdir()] == [cache.name]
