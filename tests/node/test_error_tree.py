"""One error tree: every exception class the project defines is a node.errors.ModexError, so that
the command line and the web app each handle all of them in one place; bad input is also a
ValueError."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import app
import ml
import modex
import node
from ml.serve import InvalidInput
from node.errors import DecodeError, InputError, IntegrityError, ModexError
from node.market import valid_score
from node.signer import dev_signer

PACKAGES = (node, app, ml, modex)


def project_modules():
    """Every module of the project's packages, imported (torch, flask and web3 are installed)."""
    modules = [importlib.import_module(package.__name__) for package in PACKAGES]
    for package in PACKAGES:
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            modules.append(importlib.import_module(info.name))
    return modules


def defined_exceptions() -> list[type]:
    found = []
    for module in project_modules():
        for value in vars(module).values():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == module.__name__
            ):
                found.append(value)
    return found


def test_every_exception_the_project_defines_is_a_modex_error_with_a_docstring():
    exceptions = defined_exceptions()
    names = {f"{e.__module__}.{e.__qualname__}" for e in exceptions}
    # The walk reached every layer: the node's tree, the app's and ml's own classes.
    assert {"node.errors.InputError", "app.helpers.NeedsWallet", "ml.endpoint.Refusal"} <= names
    outside = sorted(
        f"{e.__module__}.{e.__qualname__}" for e in exceptions if not issubclass(e, ModexError)
    )
    assert outside == []
    undocumented = sorted(
        f"{e.__module__}.{e.__qualname__}" for e in exceptions if not (e.__doc__ or "").strip()
    )
    assert undocumented == []


def test_bad_input_is_both_a_modex_error_and_a_value_error():
    assert issubclass(InputError, ModexError) and issubclass(InputError, ValueError)
    assert issubclass(DecodeError, IntegrityError) and issubclass(DecodeError, ValueError)
    assert issubclass(InvalidInput, InputError)  # the texts sent for inference


@pytest.mark.parametrize(
    ("kind", "index", "says"),
    [
        ("mainnet", 0, "use 'embedded' or 'anvil'"),
        ("embedded", -1, "must be >= 0"),
        ("embedded", 10**6, "dev accounts"),
    ],
)
def test_a_bad_dev_account_is_an_input_error(kind, index, says):
    with pytest.raises(InputError, match=says):
        dev_signer(kind, index)


@pytest.mark.parametrize("score", [None, 0, 6, 9, -1, 2.5])
def test_a_score_outside_one_to_five_stars_is_refused_before_anything_is_sent(score):
    with pytest.raises(InputError, match=r"^Choose a score from 1 to 5 stars\.$"):
        valid_score(score)


def test_a_score_of_one_to_five_stars_is_the_whole_number_votes_takes():
    assert [valid_score(s) for s in (1, 2, 3, 4, 5)] == [1, 2, 3, 4, 5]
