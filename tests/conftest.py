"""Shared fixtures. Area fixtures live in tests/<area>/conftest.py."""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def anvil():
    """A real anvil node on 127.0.0.1 for the whole session, stopped by PID at the end."""
    from node.devchain import start_anvil

    node = start_anvil()
    yield node
    node.stop()
