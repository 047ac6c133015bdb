"""Lets an ml/ module run as a file (``python ml/train.py``) as well as a module
(``python -m ml.train``).

Run as a file, a module's ``sys.path[0]`` is ml/, not the repository root where the ml and node
packages live, so its own ``from ml import ...`` would fail. Such a module imports this one first,
as the top-level module ``run_as_file`` (it lies in ml/, which is then on the path), and
``rerun_as_module`` runs it again as the module, from the repository root.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path
from typing import NoReturn


def rerun_as_module(file: str, module: str) -> NoReturn:
    """Run `module` (the dotted name of the module at `file`) as ``__main__`` with the repository
    root as sys.path[0], then exit."""
    sys.path[0] = str(Path(file).resolve().parent.parent)
    runpy.run_module(module, run_name="__main__", alter_sys=True)
    sys.exit()
