"""Register the anvil-local network of `brownie run scripts/deploy.py --network anvil-local` in
brownie's own network list (~/.brownie/network-config.yaml; brownie keeps networks there, not in
the project), exactly once.

Run by tools/setup.sh with brownie's venv, under a lock: two setups at once (two clones on one
machine) could each add the network, and brownie then refuses to start at all ("Multiple
networks using ID 'anvil-local'"). A list that already holds it several times keeps the first.
cmd=anvil is found through node_modules/.bin on PATH.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import yaml

NETWORK = {
    "cmd": "anvil",
    "cmd_settings": {"base_fee": 0, "port": 8545},
    "host": "http://127.0.0.1",
    "id": "anvil-local",
    "name": "anvil-local",
}


def main(path: Path) -> str:
    config = yaml.safe_load(path.read_text())
    development = config.setdefault("development", [])
    ours = [n for n in development if n.get("id") == NETWORK["id"]]
    if len(ours) == 1:
        return "already registered"
    if ours:
        config["development"] = [n for n in development if n.get("id") != NETWORK["id"]]
        config["development"].append(ours[0])
        said = f"kept one of {len(ours)} entries"
    else:
        development.append(NETWORK)
        said = "registered"
    new = path.with_name(path.name + ".new")
    new.write_text(yaml.safe_dump(config, sort_keys=False))
    os.replace(new, path)
    return said


if __name__ == "__main__":
    print(f"anvil-local: {main(Path(sys.argv[1]))}")
