#!/usr/bin/env bash
# Registers this checkout's solc wrapper where brownie (py-solc-x) looks for compilers:
# ~/.solcx/solc-v<the pinned npm solc version>. Run by tools/setup.sh and by the brownie test,
# so brownie always compiles with the wrapper of the checkout under test.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SOLC_VERSION=$(node -p "require('$ROOT/node_modules/solc/package.json').version")
mkdir -p "$HOME/.solcx"
shim="$HOME/.solcx/solc-v$SOLC_VERSION"
tmp="$shim.tmp.$$"
printf '#!/usr/bin/env bash\nexec node "%s/tools/solc" "$@"\n' "$ROOT" > "$tmp"
chmod +x "$tmp"
mv "$tmp" "$shim"
echo "$shim"
