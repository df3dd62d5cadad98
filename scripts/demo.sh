#!/usr/bin/env bash
# mcp-warden demo: a standalone sidecar in front of a real MCP server (server-everything), a real
# OAuth 2.1 authorization server (oidc-provider) minting tokens for four agents, and a real MCP
# client (the Python SDK) making calls that are allowed and denied. Ends by itself.
#
#   agents ──token──► mcp-warden-sidecar ──► @modelcontextprotocol/server-everything
#                        ▲ keys (OIDC discovery)
#                     oidc-provider
#
# Policies: examples/everything/everything.yaml (ports rewritten to free ones).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
. "${PEERS_DIR:-$root/.peers}/env.sh"
target=${CARGO_TARGET_DIR:-$root/target}
cargo build -q -p mcp-warden-sidecar --bins
sidecar_bin=$target/debug/mcp-warden-sidecar

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work" "${op_dir:-}"
}
trap cleanup EXIT

free_port() { "$PEERS_PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { # file pattern what
  for _ in $(seq 300); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "demo: $3 did not start; its output:" >&2; cat "$1" >&2; exit 1
}
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

up_port=$(free_port) idp_port=$(free_port) sc_port=$(free_port)
resource="http://127.0.0.1:$sc_port/mcp"

say "starting server-everything (the MCP server) on 127.0.0.1:$up_port"
PORT=$up_port "$PEERS_NODE22" -r "$root/scripts/force-loopback.cjs" "$PEERS_SERVER_EVERYTHING_JS" streamableHttp >"$work/everything.log" 2>&1 &
pids+=($!)
wait_for "$work/everything.log" "$up_port" server-everything

say "starting oidc-provider (the authorization server) on 127.0.0.1:$idp_port"
op_dir=$(mktemp -d "$PEERS_NPM_DIR/demo-op.XXXXXX")
cp tests/peers/oidc-provider/op.mjs tests/peers/oidc-provider/gen-keys.mjs "$op_dir/"
"$PEERS_NODE22" "$op_dir/gen-keys.mjs" k1 >"$op_dir/keys.json"
(cd "$op_dir" && OP_PORT=$idp_port OP_KEYS=keys.json OP_RESOURCE=$resource exec "$PEERS_NODE22" op.mjs) >"$work/idp.log" 2>&1 &
pids+=($!)
wait_for "$work/idp.log" READY oidc-provider
issuer="http://127.0.0.1:$idp_port"

say "starting mcp-warden-sidecar on $resource with examples/everything"
mkdir -p "$work/config"
sed -e "s#http://127.0.0.1:9400#$issuer#g" -e "s#http://127.0.0.1:9401/mcp#$resource#g" \
  examples/everything/everything.yaml >"$work/config/everything.yaml"
"$sidecar_bin" check --config "$work/config"
# The decision log: denials warn; allowed calls are logged at debug (an access log).
RUST_LOG=info,mcp_warden::decision=debug "$sidecar_bin" run --config "$work/config" --listen "127.0.0.1:$sc_port" --admin-listen 127.0.0.1:0 \
  --upstream "http://127.0.0.1:$up_port/mcp" --audit-dir "$work/audit" >"$work/sidecar.log" 2>&1 &
pids+=($!)
wait_for "$work/sidecar.log" listening mcp-warden-sidecar

token() { # client scope
  curl -s -u "$1:${1#agent-}-secret" -d grant_type=client_credentials --data-urlencode "scope=$2" \
    --data-urlencode "resource=$resource" "$issuer/token" |
    "$PEERS_PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
}
alpha=$(token agent-alpha "mcp:tools.list mcp:tools.call")
beta=$(token agent-beta "mcp:tools.list")
gamma=$(token agent-gamma "mcp:tools.list mcp:tools.call")
delta=$(token agent-delta "mcp:tools.list mcp:tools.call")
echo "tokens minted for agent-alpha, agent-beta, agent-gamma (suspended), agent-delta (expired)"

client() { # label token args...
  local label=$1 tok=$2
  shift 2
  printf '\n\033[36m%s\033[0m\n' "$label"
  "$PEERS_PYTHON" tests/peers/py_client.py --token "$tok" --mode legacy "$resource" "$@" >"$work/report.json" 2>>"$work/client.log" || true
  "$PEERS_PYTHON" scripts/demo_report.py <"$work/report.json"
}

say "calls through the sidecar (Python MCP SDK)"
client "agent-alpha lists its tools" "$alpha" list
client "agent-beta lists its tools (fewer: its policy grants less)" "$beta" list
client "agent-alpha calls get-sum(2, 3)" "$alpha" call get-sum '{"a": 2, "b": 3}'
client "agent-beta calls echo (no scope needed)" "$beta" call echo '{"message": "hello from beta"}'
client "agent-beta calls get-tiny-image (granted, but its token lacks mcp:tools.call: step-up)" "$beta" call get-tiny-image '{}'
client "agent-beta calls toggle-simulated-logging (not granted: hidden, answered as unknown)" "$beta" call toggle-simulated-logging '{}'
client "agent-alpha calls get-env (needs mcp:admin, which no agent has)" "$alpha" call get-env '{}'
client "agent-alpha lists resources" "$alpha" resources
client "agent-beta lists resources (fewer: its policy grants two of the seven documents)" "$beta" resources
client "agent-beta reads instructions.md (allowed)" "$beta" read demo://resource/static/document/instructions.md
client "agent-beta reads architecture.md (refused: answered as not found, never forwarded)" "$beta" read demo://resource/static/document/architecture.md
client "agent-beta lists prompts (fewer)" "$beta" prompts
client "agent-beta gets simple-prompt (allowed)" "$beta" prompt simple-prompt
client "agent-beta gets args-prompt (refused: answered as an unknown prompt)" "$beta" prompt args-prompt '{"city": "Paris"}'
client "agent-gamma (suspended) lists tools with a valid IdP token" "$gamma" list
client "agent-delta (expired) lists tools with a valid IdP token" "$delta" list
client "a caller without a token" - list

say "decision log of the sidecar (one line per decision, never a token)"
grep 'mcp_warden::decision' "$work/sidecar.log" | sed -e 's/\x1b\[[0-9;]*m//g' |
  grep -E 'tools/(call|list)|resources/(read|list)|prompts/(get|list)|denied' | tail -n 24
say "audit trail: OCSF 1.8.0 API Activity records (durable spool -> $work/audit/audit.jsonl)"
sleep 1
"$PEERS_PYTHON" scripts/demo_audit.py "$work/audit/audit.jsonl"
say "the compliance question: every call agent-beta made today"
"$target/debug/mcp-warden" audit query --client demo/agent-beta --from "$(date -u +%Y-%m-%d)" \
  --to "$(date -u +%Y-%m-%d)" "$work/audit/audit.jsonl"
say "tamper evidence: mcp-warden audit verify"
"$target/debug/mcp-warden" audit verify "$work/audit/audit.jsonl"
say "upstream identity (docs/upstream-auth.md): a server that verifies who calls"
# A second sidecar, in front of tests/peers/identity_upstream.py (Python MCP SDK + PyJWT): for
# every call it signs a short-lived JWT naming the caller (key: generated here; JWKS on its admin
# port) and adds the server's own API key from a Secret-like folder. The caller's token never
# reaches the server, which verifies the JWT itself and refuses calls without one.
"$PEERS_PYTHON" -c 'import sys
from cryptography.hazmat.primitives import serialization as s
from cryptography.hazmat.primitives.asymmetric import ed25519
k = ed25519.Ed25519PrivateKey.generate()
sys.stdout.buffer.write(k.private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption()))' >"$work/identity-key.pem"
mkdir -p "$work/secrets/upstream-api" "$work/id-config"
printf demo-backend-key >"$work/secrets/upstream-api/token"
# The JWT's issuer is the McpTool's resource, its audience the server's URL.
JWKS_URL_FILE=$work/jwks-url AUDIENCE_FROM_URL=1 ISSUER=$resource CREDENTIAL_HEADER=X-Api-Key \
  RECORD=$work/identity.jsonl "$PEERS_PYTHON" tests/peers/identity_upstream.py 0 >"$work/identity-upstream.log" 2>&1 &
pids+=($!)
wait_for "$work/identity-upstream.log" READY identity_upstream.py
id_upstream=$(sed -n 's/^READY //p' "$work/identity-upstream.log" | head -1)
id_port=$(free_port) id_admin=$(free_port)
sed -e "s#\"RESOURCE\"#\"$resource\"#" -e "s#\"UPSTREAM\"#\"$id_upstream\"#" -e "s#\"ISSUER\"#\"$issuer\"#g" \
  tests/fixtures/configs/upstream-auth.yaml >"$work/id-config/verified.yaml"
"$sidecar_bin" run --config "$work/id-config" --listen "127.0.0.1:$id_port" --admin-listen "127.0.0.1:$id_admin" \
  --upstream-identity-key "$work/identity-key.pem" --upstream-secrets-dir "$work/secrets" \
  --audit-dir "$work/id-audit" >"$work/id-sidecar.log" 2>&1 &
pids+=($!)
wait_for "$work/id-sidecar.log" listening "the second mcp-warden-sidecar"
echo "http://127.0.0.1:$id_admin/.well-known/jwks.json" >"$work/jwks-url"
printf '\n\033[36m%s\033[0m\n' "agent-alpha calls whoami through the sidecar: the server answers with the identity it verified"
"$PEERS_PYTHON" tests/peers/py_client.py --token "$alpha" --mode legacy "http://127.0.0.1:$id_port/mcp" call whoami '{}' >"$work/report.json" 2>>"$work/client.log" || true
"$PEERS_PYTHON" scripts/demo_report.py <"$work/report.json"
printf '\n\033[36m%s\033[0m\n' "what the server received (its own record): verified claims, its API key, no caller token"
"$PEERS_PYTHON" -c 'import json,sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("identity") and r["identity"].get("mcp_client"):
        c = r["identity"]
        print(json.dumps({"sub": c.get("sub"), "mcp_client": c.get("mcp_client"), "iss": c.get("iss"),
                          "aud": c.get("aud"), "lifetime_s": c["exp"] - c["iat"], "kid": r.get("kid"),
                          "api_key": r.get("credential"), "authorization": r.get("authorization")}, indent=1))
        break' "$work/identity.jsonl"
printf '\n\033[36m%s\033[0m\n' "the same call sent to the server directly, around the sidecar (no identity JWT)"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$id_upstream" -H 'Content-Type: application/json' \
  -H 'Accept: application/json, text/event-stream' -d '{"jsonrpc":"2.0","id":1,"method":"tools/list"}')
echo "HTTP $code: the server refuses it"
say "done"
