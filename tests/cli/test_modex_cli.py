"""The `modex` dispatcher (modex/cli.py): every command listed by `modex --help` is defined by the
module COMMANDS names, and the commands that need no chain start without web3, torch or flask."""

import argparse
import os
import subprocess
import sys

import pytest

from modex import cli
from node.content.cid import cid_of_file
from node.content.manifest import build_manifest
from node.content.seal import unseal_file

# Packages that cost a second of start-up between them; a command that does not talk to a chain,
# train or serve must not load them.
HEAVY = {"web3", "eth_account", "eth_abi", "torch", "transformers", "flask"}
KEY_HEX = "11" * 32


# `python -m modex ARGV` that writes the names of every module it loaded, once it exits, to the
# file named by MODULES_FILE (-X importtime would miss modules loaded by importlib.import_module).
RUN_MODEX = (
    "import atexit, os, runpy, sys\n"
    "def write_modules():\n"
    "    open(os.environ['MODULES_FILE'], 'w').write('\\n'.join(sys.modules))\n"
    "atexit.register(write_modules)\n"
    "runpy.run_module('modex', run_name='__main__', alter_sys=True)\n"
)


def modex_imports(*argv: str, cwd) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Run `python -m modex ARGV` and return it with the full names of the modules it loaded."""
    modules_file = cwd / "modules.txt"
    env = {**os.environ, "MODULES_FILE": str(modules_file)}
    proc = subprocess.run(
        [sys.executable, "-c", RUN_MODEX, *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    imported = set(modules_file.read_text().splitlines())
    assert "modex.cli" in imported, proc.stderr[-2000:]  # the list was written
    return proc, imported


def heavy(imported: set[str]) -> set[str]:
    return {name.split(".")[0] for name in imported} & HEAVY


def test_help_lists_every_command_without_loading_heavy_packages(tmp_path):
    proc, imported = modex_imports("--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    listed = proc.stdout.split("positional arguments:")[1].split("options:")[0]
    for name, (_module, summary) in cli.COMMANDS.items():
        assert f"    {name} " in listed
        assert " ".join(summary.split()[:3]) in " ".join(listed.split())
    assert not heavy(imported)
    assert not {name for name in imported if name.startswith("modex.commands.")}


def test_hash_cid_and_seal_give_their_results_without_loading_heavy_packages(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_bytes(b'{"labels": 2}')
    (model / "model.safetensors").write_bytes(os.urandom(300_000))

    proc, imported = modex_imports("hash", str(model), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == build_manifest(model).model_hash_hex
    assert not heavy(imported), heavy(imported)

    weights = model / "model.safetensors"
    proc, imported = modex_imports("cid", str(weights), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == cid_of_file(weights)
    assert not heavy(imported), heavy(imported)

    sealed, opened = tmp_path / "weights.sealed", tmp_path / "weights.opened"
    proc, imported = modex_imports(
        "seal", "--key-hex", KEY_HEX, str(weights), str(sealed), cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith(f"sealed {weights} -> {sealed} (")
    assert not heavy(imported), heavy(imported)
    unseal_file(bytes.fromhex(KEY_HEX), sealed, opened)
    assert opened.read_bytes() == weights.read_bytes()


def test_a_chain_command_still_loads_its_module_and_web3(tmp_path):
    """The checks above can fail: a command that reads the chain loads its module and web3."""
    proc, imported = modex_imports("models", "--help", cwd=tmp_path)
    assert proc.returncode == 0 and "usage: modex models" in proc.stdout
    assert "modex.commands.models" in imported and "web3" in heavy(imported)


@pytest.mark.parametrize("module", sorted({module for module, _ in cli.COMMANDS.values()}))
def test_each_module_registers_exactly_the_commands_the_table_gives_it(module):
    names = [name for name, (defined_in, _) in cli.COMMANDS.items() if defined_in == module]
    sub = argparse.ArgumentParser(prog="modex").add_subparsers(dest="command")
    cli.command_module(names[0]).register(sub)
    assert list(sub.choices) == names
    for name, parser in sub.choices.items():
        assert parser.prog == f"modex {name}"
        assert parser.get_default("func") or any(  # a handler, or actions that each have one
            isinstance(a, argparse._SubParsersAction) for a in parser._actions
        ), name


def test_no_command_prints_the_list_and_exits_2(capsys):
    assert cli.main([]) == 2
    assert "worker" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        cli.main(["no-such-command"])
    assert exc.value.code == 2
    assert "invalid choice: 'no-such-command'" in capsys.readouterr().err
