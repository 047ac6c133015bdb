"""Every custom error the Modex contracts (except Channels, which keeps its own check) can revert with
has a sentence in node/revert.py that a person can act on, and it renders from the error's own
arguments."""

import pytest

from node.compiler import compile_contracts
from node.revert import MESSAGES

CONTRACTS = ("ModelRegistry", "Marketplace", "Validators", "Votes", "MockStablecoin")


def _errors(name: str) -> list[dict]:
    return [item for item in compile_contracts()[name]["abi"] if item["type"] == "error"]


@pytest.mark.parametrize("name", CONTRACTS)
def test_every_error_has_a_sentence_that_renders(name):
    samples = {"address": "0x" + "ab" * 20, "bytes32": "0x" + "11" * 32, "string": "x"}
    for error in _errors(name):
        assert error["name"] in MESSAGES, (
            f"{name}.{error['name']} has no sentence in node/revert.py"
        )
        args = {i["name"]: samples.get(i["type"], 7) for i in error["inputs"]}
        sentence = MESSAGES[error["name"]](args)
        assert sentence.endswith((".", ")")) and "{" not in sentence, (error["name"], sentence)
