"""pyproject.toml's [project] dependencies against the code and the lock: every third-party module
that node/, app/, ml/ and modex/ import is declared there, and each declared range holds the
version requirements.txt pins (torch: the version tools/setup.sh installs), so the `pip install -e .`
of tools/setup.sh has nothing new to resolve."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from node import paths

CODE = ("node", "app", "ml", "modex")


def _declared() -> list[Requirement]:
    project = tomllib.loads((paths.ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(line) for line in project["dependencies"]]


def _pins() -> dict[str, str]:
    pins = {}
    for line in (paths.ROOT / "requirements.txt").read_text().splitlines():
        name, sep, version = line.split("#")[0].strip().partition("==")
        if sep:
            pins[canonicalize_name(name)] = version
    torch = re.search(r"pip install -q torch==(\S+)", (paths.ROOT / "tools/setup.sh").read_text())
    assert torch, "tools/setup.sh no longer installs a pinned torch: update this test"
    pins["torch"] = torch.group(1)
    return pins


def _third_party_imports() -> dict[str, str]:
    """Top-level name of each module the code imports that is neither the standard library, the
    project itself nor a module beside the importing file -> one file importing it."""
    found: dict[str, str] = {}
    for package in CODE:
        for path in sorted((paths.ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for top in (name.split(".")[0] for name in names):
                    local = top in CODE or (path.parent / f"{top}.py").exists()
                    if not local and top not in sys.stdlib_module_names and top != "__future__":
                        found.setdefault(top, str(path.relative_to(paths.ROOT)))
    return found


def test_every_imported_third_party_module_is_a_declared_dependency():
    declared = {canonicalize_name(r.name) for r in _declared()}
    providers = importlib.metadata.packages_distributions()
    missing = []
    for module, where in sorted(_third_party_imports().items()):
        dists = {canonicalize_name(d) for d in providers.get(module, [])}
        if not dists & declared:
            missing.append(
                f"{module} (imported by {where}; installed by {sorted(dists) or 'none'})"
            )
    assert not missing, f"not in pyproject's [project] dependencies: {missing}"


def test_requirements_pins_satisfy_the_declared_ranges():
    pins = _pins()
    wrong = []
    for requirement in _declared():
        pin = pins.get(canonicalize_name(requirement.name))
        if pin is None or not requirement.specifier.contains(pin, prereleases=True):
            wrong.append(f"{requirement} (requirements.txt pins {pin})")
    assert not wrong, f"declared ranges the lock does not satisfy: {wrong}"
