#!/usr/bin/env bash
# `make bench`: the same workload directly against the bench upstream and through the sidecar
# (full chain: RS256/ES256 JWTs, 1,000 clients / 200 tools / 2,000 policies, per-client rate limit
# that never triggers, durable audit spool + file sink), interleaved A B A B … (plus, in the durable
# pass, a bare pass-through proxy in the sidecar's place: the floor any proxy pays here), once with
# `ack: durable` (into the results folder) and once with `ack: written` (into ack-written/), then the probes
# (revocation, operator push, audit, tools/list filtering), the criterion micro-benches and, when
# perf works, a profile of the sidecar under load. Raw outputs go to bench/results/<UTC stamp>/,
# the summary to docs/performance.md and the README table (bench-tool report).
#
# Knobs (environment): BENCH_REPS (5), BENCH_SECONDS (10), BENCH_RATES ("1000 4000"),
# BENCH_CONNECTIONS (32), BENCH_SAMPLES (20, revocation and push), BENCH_SKIP_BUILD=1, BENCH_SKIP_CRITERION=1, BENCH_SKIP_PROFILE=1.
# Pinning: sidecar (and operator) on CPU 0; upstream, issuer and load generators on CPU 1.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
PEERS_DIR=${PEERS_DIR:-$REPO/.peers}
case $PEERS_DIR in /*) ;; *) PEERS_DIR=$REPO/$PEERS_DIR ;; esac
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
REPS=${BENCH_REPS:-5}
SECS=${BENCH_SECONDS:-10}
RATES=${BENCH_RATES:-"1000 4000"}
CONNS=${BENCH_CONNECTIONS:-32}
SAMPLES=${BENCH_SAMPLES:-20}
OHA_VERSION=1.16.0
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$REPO/bench/results/$STAMP
SCRATCH=$(mktemp -d /tmp/mcp-warden-bench.XXXXXX)
mkdir -p "$OUT"

log() { printf '[bench %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { printf '[bench] ERROR: %s\n' "$*" >&2; exit 1; }

# ---- processes we start, stopped by pid on exit ----------------------------------------------
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  # Keep the start and the end of the sidecar log only.
  if [[ -f $SCRATCH/sidecar.log ]]; then
    { head -40 "$SCRATCH/sidecar.log"; echo "[…]"; tail -40 "$SCRATCH/sidecar.log"; } >"$OUT/sidecar.log"
  fi
  rm -rf "$SCRATCH"
}
trap cleanup EXIT
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# ---- tools -----------------------------------------------------------------------------------
install_wrk() {
  if command -v wrk >/dev/null; then WRK=$(command -v wrk); return; fi
  if [[ -x $PEERS_DIR/wrk/usr/bin/wrk ]]; then WRK=$PEERS_DIR/wrk/usr/bin/wrk; return; fi
  if [[ $(id -u) == 0 ]]; then
    log "installing wrk (apt)"
    apt-get install -y -qq --no-install-recommends wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq --no-install-recommends wrk >/dev/null; }
    WRK=$(command -v wrk)
  else
    log "installing wrk (apt-get download + dpkg -x into $PEERS_DIR/wrk)"
    mkdir -p "$PEERS_DIR/wrk" && (cd "$PEERS_DIR/wrk" && apt-get download wrk libluajit-5.1-2 && for d in ./*.deb; do dpkg -x "$d" .; done)
    WRK=$PEERS_DIR/wrk/usr/bin/wrk
    export LD_LIBRARY_PATH=$PEERS_DIR/wrk/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
  fi
  [[ -x $WRK ]] || die "wrk is missing: apt-get install wrk"
}
install_oha() {
  OHA=$PEERS_DIR/oha/bin/oha
  if [[ -x $OHA && $("$OHA" --version) == "oha $OHA_VERSION" ]]; then return; fi
  log "installing oha $OHA_VERSION (cargo install --locked, a few minutes)"
  CARGO_TARGET_DIR=$SCRATCH/oha-build cargo install --locked --quiet oha --version "$OHA_VERSION" --root "$PEERS_DIR/oha"
  [[ -x $OHA ]] || die "oha is missing: cargo install --locked oha --root $PEERS_DIR/oha"
}
install_wrk
install_oha
command -v taskset >/dev/null || die "taskset is missing: apt-get install util-linux"
command -v openssl >/dev/null || die "openssl is missing: apt-get install openssl"

if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
  log "building (release)"
  cargo build --release --quiet -p mcp-warden-sidecar -p mcp-warden-operator -p mcp-warden-bench
  cargo test --release --quiet --no-run -p mcp-warden-operator --test scale 2>/dev/null
fi
BIN=$TARGET/release
for b in mcp-warden-sidecar mcp-warden-operator bench-upstream bench-tool; do
  [[ -x $BIN/$b ]] || die "$BIN/$b is missing (build with cargo build --release)"
done

# ---- pinning: sidecar on CPU 0, the rest on CPU 1 (both on 0 on a 1-CPU machine) -------------
if (( $(nproc) >= 2 )); then SC_CPU=0; LOAD_CPU=1; else SC_CPU=0; LOAD_CPU=0; fi
# Foreground only: a backgrounded function runs in a subshell and $! would not be the process.
on_sc() { taskset -c "$SC_CPU" "$@"; }
on_load() { taskset -c "$LOAD_CPU" "$@"; }

# ---- machine ---------------------------------------------------------------------------------
{
  echo "date: $(date -u +%FT%TZ)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "cpus: $(nproc)"
  echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
  echo "kernel: $(uname -srm)"
  echo "rustc: $(rustc --version)"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "clk_tck: $(getconf CLK_TCK)"
  echo "pinning: sidecar CPU $SC_CPU, upstream + load generators CPU $LOAD_CPU"
  echo "wrk: $("$WRK" --version 2>&1 | head -1 | cut -d' ' -f1-2)"
  echo "oha: $("$OHA" --version)"
  echo "reps: $REPS; seconds: $SECS; rates: $RATES; connections: $CONNS"
  echo "loadavg_before: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/machine.txt"

# ---- helpers -----------------------------------------------------------------------------------
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # url, seconds
  local end=$((SECONDS + $2))
  until curl -s -o /dev/null "$1"; do (( SECONDS < end )) || die "$1 did not answer within $2 s"; sleep 0.1; done
}
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
status_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
BODY='{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hello"}}}'
LIST='{"jsonrpc":"2.0","id":2,"method":"tools/list"}'

P_UP=$(free_port); P_SC=$(free_port); P_ADMIN=$(free_port); P_RS=$(free_port); P_ES=$(free_port)
DIRECT=http://127.0.0.1:$P_UP/mcp
THROUGH=http://127.0.0.1:$P_SC/mcp
FX=$SCRATCH/fixture

log "fixture: 1,000 clients / 200 tools / 2,000 policies, RS256 + ES256 issuers, tokens"
"$BIN/bench-tool" gen --dir "$FX" --issuer-rs "http://127.0.0.1:$P_RS" --issuer-es "http://127.0.0.1:$P_ES" \
  --resource "$THROUGH" --upstream "$DIRECT"
cp "$FX/config/clients.yaml" "$FX/clients-active.yaml"
cp "$FX/config/tool.yaml" "$OUT/tool.yaml"

taskset -c "$LOAD_CPU" "$BIN/bench-tool" issuer --issuers "$FX/issuers.json" 2>"$OUT/issuer.log" & PIDS+=($!)
taskset -c "$LOAD_CPU" "$BIN/bench-upstream" --listen "127.0.0.1:$P_UP" --tools 20 2>"$OUT/upstream.log" & UP=$!; PIDS+=($UP)
AUDIT_CFG=$("$BIN/bench-tool" audit-config --dir "$SCRATCH/audit" --ack durable)

start_sidecar() { # extra args…
  taskset -c "$SC_CPU" "$BIN/mcp-warden-sidecar" run --listen "127.0.0.1:$P_SC" --admin-listen "127.0.0.1:$P_ADMIN" \
    --audit-config "$AUDIT_CFG" "$@" 2>>"$SCRATCH/sidecar.log" &
  SC=$!; PIDS+=($SC)
  wait_http "http://127.0.0.1:$P_ADMIN/ready" 60
  local end=$((SECONDS + 60))
  until [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$P_ADMIN/ready") == 200 ]]; do
    (( SECONDS < end )) || die "the sidecar is not ready after 60 s (see $SCRATCH/sidecar.log)"; sleep 0.1
  done
}
call() { # url token body → HTTP status
  curl -s -o /dev/null -w '%{http_code}' -X POST "$1" -H "Authorization: Bearer $2" \
    -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' -d "$3"
}

log "sidecar (file mode, full chain)"
start_sidecar --config "$FX/config" --upstream "$DIRECT"
wait_http "$DIRECT" 10
TOK_RS=$(sed -n 3p "$FX/tokens.txt"); TOK_ES=$(sed -n 4p "$FX/tokens.txt")
[[ $(call "$THROUGH" "$TOK_RS" "$BODY") == 200 && $(call "$THROUGH" "$TOK_ES" "$BODY") == 200 ]] \
  || { tail -20 "$SCRATCH/sidecar.log" >&2; die "a call through the sidecar failed"; }
sleep 1
echo "$(status_kb "$SC" VmRSS)" >"$OUT/rss-idle-kb.txt"
# The split: anonymous memory is this sidecar's own; file-backed pages (the program's code) are
# shared by every sidecar started from the same image on a node.
echo "$(status_kb "$SC" RssAnon)" >"$OUT/rss-idle-anon-kb.txt"
echo "$(status_kb "$SC" RssFile)" >"$OUT/rss-idle-file-kb.txt"
log "idle RSS: $(cat "$OUT/rss-idle-kb.txt") kB (anonymous $(cat "$OUT/rss-idle-anon-kb.txt") kB)"

# ---- A/B: wrk closed loop, then oha open loop at fixed rates, into folder $1 ------------------
# Sides: direct, through (the sidecar), and with $2 = floor also through the bare pass-through proxy.
side_url() { case $1 in direct) echo "$DIRECT" ;; through) echo "$THROUGH" ;; floor) echo "$FLOOR" ;; esac; }
side_pid() { case $1 in through) echo "$SC" ;; floor) echo "$PT" ;; esac; }
side_cpu() { case $1 in through) echo cpu ;; floor) echo cpu-floor ;; esac; }
ab_runs() {
  local dir=$1 sides="direct through ${2:-}" rep side url t0 t1 rate tok
  mkdir -p "$dir"
  log "warm-up (every wrk token verified once)"
  on_load "$WRK" -t1 -c"$CONNS" -d3s -s "$FX/wrk-tokens.lua" "$THROUGH" >/dev/null
  for rep in $(seq 1 "$REPS"); do
    for side in $sides; do
      url=$(side_url "$side")
      [[ $side != direct ]] && t0=$(ticks "$(side_pid "$side")")
      on_load "$WRK" -t1 -c"$CONNS" -d"${SECS}s" -s "$FX/wrk-tokens.lua" "$url" >"$dir/wrk-$side-$rep.txt" 2>&1
      [[ $side != direct ]] && echo "$t0 $(ticks "$(side_pid "$side")")" >"$dir/$(side_cpu "$side")-wrk-$rep.txt"
      log "wrk $side #$rep: $(grep -m1 'Requests/sec' "$dir/wrk-$side-$rep.txt" || echo '?')"
    done
  done
  # The closed-loop runs leave gigabytes of audit data dirty in the page cache; its writeback would
  # throttle every write(2) of the open-loop runs (the sidecar's and the machine's) for a while.
  log "sync (writeback of the closed-loop runs' audit data before the latency runs)"
  sync
  for rate in $RATES; do
    for rep in $(seq 1 "$REPS"); do
      tok=$TOK_RS; (( rep % 2 == 0 )) && tok=$TOK_ES
      for side in $sides; do
        url=$(side_url "$side")
        [[ $side != direct ]] && t0=$(ticks "$(side_pid "$side")")
        on_load "$OHA" -z "${SECS}s" -q "$rate" --latency-correction -c "$CONNS" --no-tui --output-format json \
          -m POST -H "Authorization: Bearer $tok" -H 'Accept: application/json, text/event-stream' \
          -T application/json -d "$BODY" "$url" >"$dir/oha-$rate-$side-$rep.json"
        [[ $side != direct ]] && echo "$t0 $(ticks "$(side_pid "$side")")" >"$dir/$(side_cpu "$side")-oha-$rate-$rep.txt"
      done
      log "oha $rate/s #$rep done"
    done
  done
}
P_PT=$(free_port); FLOOR=http://127.0.0.1:$P_PT/mcp
log "floor: a bare pass-through proxy on CPU $SC_CPU"
taskset -c "$SC_CPU" "$BIN/bench-tool" passthrough --listen "127.0.0.1:$P_PT" --upstream "$DIRECT" 2>"$OUT/passthrough.log" &
PT=$!; PIDS+=($PT)
wait_http "$FLOOR" 10
log "A/B with ack: durable (and the floor)"
ab_runs "$OUT" floor
# ---- shapes (issue #21): a 100 KiB result, and 100 SSE progress events before the answer ------
SHAPE_RATE=${BENCH_SHAPE_RATE:-200}
for shape in big progress; do
  sbody='{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hello","shape":"'$shape'"},"_meta":{"progressToken":1}}}'
  for rep in $(seq 1 "$REPS"); do
    for side in direct through floor; do
      on_load "$OHA" -z 5s -q "$SHAPE_RATE" --latency-correction -c "$CONNS" --no-tui --output-format json -m POST \
        -H "Authorization: Bearer $TOK_RS" -H 'Accept: application/json, text/event-stream' -T application/json \
        -d "$sbody" "$(side_url "$side")" >"$OUT/shape-$shape-$side-$rep.json"
    done
  done
  log "shape $shape at $SHAPE_RATE/s done"
done
stop "$PT"
echo "$(status_kb "$SC" VmHWM)" >"$OUT/rss-peak-kb.txt"
log "peak RSS: $(cat "$OUT/rss-peak-kb.txt") kB"

# ---- profile under load (when perf works; cpu-clock sampling, as VMs often lack HW counters) ---
if [[ ${BENCH_SKIP_PROFILE:-0} != 1 ]] && perf record -e cpu-clock -o "$SCRATCH/perf.check" -- true >/dev/null 2>&1; then
  log "perf profile of the sidecar under wrk load (10 s)"
  taskset -c "$LOAD_CPU" "$WRK" -t1 -c"$CONNS" -d12s -s "$FX/wrk-tokens.lua" "$THROUGH" >/dev/null 2>&1 & W=$!
  sleep 1
  perf record -e cpu-clock -F 999 -o "$SCRATCH/perf.data" -p "$SC" -- sleep 10 >/dev/null 2>&1 || true
  wait "$W" || true
  perf report -i "$SCRATCH/perf.data" --stdio --no-children --percent-limit 0.7 2>/dev/null \
    | grep -v -e '^$' -e '^#' | head -80 >"$OUT/perf-top.txt" || true
  perf report -i "$SCRATCH/perf.data" --stdio --no-children --percent-limit 1 --sort dso 2>/dev/null \
    | grep -v '^$' | head -30 >"$OUT/perf-dso.txt" || true
fi

# ---- revocation, file mode ---------------------------------------------------------------------
log "revocation, file mode (20 samples)"
on_load "$BIN/bench-tool" revocation --what "file mode: config write → first 403" --url "$THROUGH" \
  --token-file "$FX/tokens.txt" --file "$FX/config/clients.yaml" --active "$FX/clients-active.yaml" \
  --suspended "$FX/clients-suspended.yaml" --samples "$SAMPLES" --out "$OUT/revocation-file.json"
stop "$SC"

# ---- A/B again with ack: written (the record is written before forwarding, not fsynced) --------
log "A/B with ack: written"
AUDIT_CFG_DURABLE=$AUDIT_CFG
AUDIT_CFG=$("$BIN/bench-tool" audit-config --dir "$SCRATCH/audit-written" --ack written)
start_sidecar --config "$FX/config" --upstream "$DIRECT"
ab_runs "$OUT/ack-written"
stop "$SC"
AUDIT_CFG=$AUDIT_CFG_DURABLE

# ---- tools/list filtering with 1,000 tools -----------------------------------------------------
log "tools/list with 1,000 tools (200 declared, filtered to the caller's grants)"
P_UP2=$(free_port); DIRECT2=http://127.0.0.1:$P_UP2/mcp
taskset -c "$LOAD_CPU" "$BIN/bench-upstream" --listen "127.0.0.1:$P_UP2" --tools 1000 2>/dev/null & UP2=$!; PIDS+=($UP2)
wait_http "$DIRECT2" 10
start_sidecar --config "$FX/config" --upstream "$DIRECT2"
for rep in $(seq 1 "$REPS"); do
  for side in direct through; do
    url=$DIRECT2; [[ $side == through ]] && url=$THROUGH
    t0=$(ticks "$SC")
    on_load "$OHA" -z 5s -c 1 --no-tui --output-format json -m POST -H "Authorization: Bearer $TOK_RS" \
      -H 'Accept: application/json, text/event-stream' -T application/json -d "$LIST" "$url" >"$OUT/list-$side-$rep.json"
    t1=$(ticks "$SC")
    [[ $side == through ]] && echo "$t0 $t1" >"$OUT/cpu-list-$rep.txt"
  done
done
stop "$SC"; stop "$UP2"

# ---- revocation, operator mode -----------------------------------------------------------------
log "revocation, operator mode (20 samples)"
OPDIR=$SCRATCH/operator-files; mkdir -p "$OPDIR"; cp "$FX/config/"*.yaml "$OPDIR/"
P_OP=$(free_port)
taskset -c "$SC_CPU" "$BIN/mcp-warden-operator" run --source "files:$OPDIR" --listen "127.0.0.1:$P_OP" --heartbeat-seconds 1 \
  2>"$OUT/operator.log" & OP=$!; PIDS+=($OP)
wait_http "http://127.0.0.1:$P_OP/" 60
start_sidecar --operator "http://127.0.0.1:$P_OP" --pod-namespace bench --pod-name bench-0 --pod-labels app=bench \
  --state-dir "$SCRATCH/state" --upstream "$DIRECT"
on_load "$BIN/bench-tool" revocation --what "operator mode: CR file write → operator → push → first 403" \
  --url "$THROUGH" --token-file "$FX/tokens.txt" --file "$OPDIR/clients.yaml" --active "$FX/clients-active.yaml" \
  --suspended "$FX/clients-suspended.yaml" --samples "$SAMPLES" --out "$OUT/revocation-operator.json"
stop "$SC"; stop "$OP"

# ---- operator scale: 10,000 clients / 1,000 tools / 2,000 policies ----------------------------
log "operator with 10,000 McpClients / 1,000 McpTools / 2,000 McpPolicies"
INV=$SCRATCH/inventory
"$BIN/bench-tool" inventory --dir "$INV"
P_OP=$(free_port)
taskset -c "$SC_CPU" "$BIN/mcp-warden-operator" run --source "files:$INV" --listen "127.0.0.1:$P_OP" --heartbeat-seconds 1 \
  2>"$OUT/operator-scale.log" & OP=$!; PIDS+=($OP)
wait_http "http://127.0.0.1:$P_OP/" 120
echo "$(status_kb "$OP" VmRSS)" >"$OUT/operator-rss-loaded-kb.txt"
on_load "$BIN/bench-tool" push --operator "http://127.0.0.1:$P_OP" --dir "$INV" --samples "$SAMPLES" --out "$OUT/operator-push.json" \
  || log "operator push probe failed (the report shows n/a)"
echo "$(status_kb "$OP" VmHWM)" >"$OUT/operator-rss-peak-kb.txt"
stop "$OP"
scale_test=$(ls -t "$TARGET"/release/deps/scale-* 2>/dev/null | grep -v '\.d$' | head -1 || true)
if [[ -n $scale_test ]]; then
  log "operator index, in process (operator/tests/scale.rs, release)"
  on_sc "$scale_test" --nocapture >"$OUT/operator-index-scale.txt" 2>&1 || log "scale test failed (see $OUT/operator-index-scale.txt)"
fi

# ---- audit pipeline ----------------------------------------------------------------------------
log "audit: records/s into the spool (durable, written) on one core"
on_sc "$BIN/bench-tool" audit --dir "$SCRATCH/audit-load" --out "$OUT/audit.json"

# ---- criterion micro-benches -------------------------------------------------------------------
if [[ ${BENCH_SKIP_CRITERION:-0} != 1 ]]; then
  log "criterion micro-benches (pinned to CPU $SC_CPU)"
  taskset -c "$SC_CPU" cargo bench --quiet -p mcp-warden-bench --bench hot_path >"$OUT/criterion.txt" 2>&1 \
    || log "criterion failed (see $OUT/criterion.txt)"
fi

echo "loadavg_after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"
log "report"
"$BIN/bench-tool" report --results "$OUT" --doc "$REPO/docs/performance.md" --readme "$REPO/README.md"
log "done: $OUT, docs/performance.md, README.md"
