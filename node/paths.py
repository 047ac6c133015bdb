"""Where the project's own tools live (solc wrapper, npm binaries, build folder)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONTRACTS_DIR = ROOT / "contracts"
BUILD_DIR = ROOT / "build"
DEPLOYMENTS_DIR = ROOT / "deployments"
NODE_MODULES = ROOT / "node_modules"
SOLC_WRAPPER = ROOT / "tools" / "solc"
ANVIL_BIN = NODE_MODULES / ".bin" / "anvil"
FORGE_BIN = NODE_MODULES / ".bin" / "forge"
