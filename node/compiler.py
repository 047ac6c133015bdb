"""Compile the Solidity contracts with py-solc-x through the npm `solc` wrapper (tools/solc).

Artifacts (ABI, bytecode, the sources' hash) are cached under build/contracts/ keyed by a hash of
every input that can change the output: source files, compiler version, settings and the locked
OpenZeppelin version. Compiling takes seconds; a cache hit takes milliseconds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

from node import paths
from node.errors import CompileError

log = logging.getLogger(__name__)

EVM_VERSION = "prague"  # the embedded py-evm has no osaka opcodes
SETTINGS = {
    "optimizer": {"enabled": True, "runs": 200},
    "evmVersion": EVM_VERSION,
    "outputSelection": {
        "*": {
            "*": [
                "abi",
                "evm.bytecode.object",
                "evm.deployedBytecode.object",
                "evm.methodIdentifiers",
            ]
        }
    },
}


def solc_version() -> str:
    lock = paths.NODE_MODULES / "solc" / "package.json"
    if not lock.exists():
        raise CompileError(
            "the npm solc package is not installed: run `bash tools/setup.sh` (it runs `npm ci`)"
        )
    return json.loads(lock.read_text())["version"]


def _source_files(source_dirs: list[Path]) -> list[Path]:
    files: list[Path] = []
    for d in source_dirs:
        files.extend(sorted(p for p in Path(d).rglob("*.sol") if p.is_file()))
    return files


def _unit_name(path: Path) -> str:
    return path.resolve().relative_to(paths.ROOT).as_posix()


def _inputs_hash(files: list[Path]) -> str:
    h = hashlib.sha256()
    h.update(solc_version().encode())
    h.update(json.dumps(SETTINGS, sort_keys=True).encode())
    oz = paths.NODE_MODULES / "@openzeppelin" / "contracts" / "package.json"
    h.update(oz.read_bytes() if oz.exists() else b"no-oz")
    for f in files:
        h.update(_unit_name(f).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def compile_contracts(
    source_dirs: list[Path] | None = None, build_dir: Path | None = None
) -> dict[str, dict]:
    """Compile every .sol file under ``source_dirs`` and return ``{ContractName: artifact}``.

    An artifact is ``{"abi", "bytecode", "deployedBytecode", "sourceHash", "source"}``.
    """
    source_dirs = source_dirs or [paths.CONTRACTS_DIR]
    build_dir = Path(build_dir or paths.BUILD_DIR / "contracts")
    files = _source_files(source_dirs)
    if not files:
        raise CompileError(f"no Solidity sources under {', '.join(map(str, source_dirs))}")
    digest = _inputs_hash(files)
    cache = build_dir / f"{digest}.json"
    if cache.exists():
        try:
            return json.loads(cache.read_text())
        except (
            ValueError,
            OSError,
        ):  # damaged (cut short, copied half): compile again and rewrite it
            log.warning("compiler cache %s is unreadable; compiling again", cache)

    import solcx  # imported lazily: only compiling needs it

    if not paths.SOLC_WRAPPER.exists():
        raise CompileError(
            f"solc wrapper missing at {paths.SOLC_WRAPPER}: run `bash tools/setup.sh`"
        )
    standard_input = {
        "language": "Solidity",
        "sources": {_unit_name(f): {"content": f.read_text()} for f in files},
        "settings": SETTINGS,
    }
    log.info("compiling %d Solidity files with solc %s", len(files), solc_version())
    try:
        output = solcx.compile_standard(
            standard_input,
            solc_binary=paths.SOLC_WRAPPER,
            allow_paths=[str(paths.ROOT)],
        )
    except solcx.exceptions.SolcError as exc:
        raise CompileError(f"solc failed: {exc}") from exc
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise CompileError(
            "solc reported errors:\n" + "\n".join(e["formattedMessage"] for e in errors)
        )

    own_units = set(standard_input["sources"])
    artifacts: dict[str, dict] = {}
    for unit, contracts in output["contracts"].items():
        if unit not in own_units:
            continue  # libraries pulled in by import (OpenZeppelin) are not ours to deploy
        for name, c in contracts.items():
            if name in artifacts:
                raise CompileError(
                    f"two contracts named {name}: {artifacts[name]['source']} and {unit}"
                )
            artifacts[name] = {
                "abi": c["abi"],
                "bytecode": "0x" + c["evm"]["bytecode"]["object"],
                "deployedBytecode": "0x" + c["evm"]["deployedBytecode"]["object"],
                "methodIdentifiers": c["evm"].get("methodIdentifiers", {}),
                "sourceHash": digest,
                "source": unit,
            }
    # Written atomically: a reader never sees half an artifact file.
    build_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=build_dir, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(artifacts, fh)
        os.replace(tmp, cache)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return artifacts
