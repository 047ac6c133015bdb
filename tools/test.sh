#!/usr/bin/env bash
# Sets up (tools/setup.sh) and runs the whole test suite, external components included: the tests
# start anvil, the IPFS daemon, brownie and chromium themselves on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONDONTWRITEBYTECODE=1
.venv/bin/ruff check .  # lint ([tool.ruff.lint] in pyproject.toml)
.venv/bin/ruff format --check .  # Python style
node_modules/.bin/forge fmt --check contracts tests/forge  # Solidity style ([fmt] in foundry.toml)
.venv/bin/mypy  # types of node/ ([tool.mypy] in pyproject.toml)
# --durations: the slowest tests in the log, to keep CI well under its time limit.
exec .venv/bin/python -m pytest --durations=40 "$@"
