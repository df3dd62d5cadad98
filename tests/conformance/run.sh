#!/usr/bin/env bash
# Run the MCP conformance server suite against one target, with the matching baseline.
#
#   OUT=<dir> [UPSTREAM=fixture|everything] tests/conformance/run.sh <direct|proxy> <target-url> <suite-id>
#
#   direct|proxy   whether <target-url> is the upstream itself or the proxy in front of it
#                  (selects the *-via-proxy.yml baseline when one exists)
#   target-url     MCP endpoint, e.g. http://localhost:3100/mcp (dns-rebinding-protection
#                  needs a localhost / 127.0.0.1 / [::1] URL)
#   suite-id       0.1.16    @modelcontextprotocol/conformance 0.1.16, "active" suite
#                  20251125  0.2.0-alpha.12 --requirements 2025-11-25
#                  20260728  0.2.0-alpha.12 --requirements 2026-07-28
#
# Env:
#   OUT                  output dir (required): results/ (the CLI's -o dir, recreated),
#                        conformance.log, summary.json
#   UPSTREAM             fixture (default; tests/peers/fixture_server.py) or everything
#                        (@modelcontextprotocol/server-everything): picks <UPSTREAM>-<suite>[-via-proxy].yml
#   BASELINE             explicit baseline file; "none" runs without --expected-failures
#   SCENARIO_TIMEOUT_MS  per-scenario timeout for 0.2.x (--timeout), default 30000
#   RUN_TIMEOUT          bound on the whole run in seconds, default 600 (0.1.16 has no --timeout)
#
# Exit: the CLI's status (0 = every failure is in the baseline and no entry is stale; 1 =
# unexpected failure or stale entry), 124 if RUN_TIMEOUT expired, 2 on usage/setup errors,
# 3 if the CLI produced no results. summary.json is written in every case where results exist.
set -euo pipefail

usage() {
	sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2
	exit 2
}
[[ $# -eq 3 ]] || usage
mode=$1 url=$2 suite=$3
case $mode in direct | proxy) ;; *) echo "run.sh: mode must be direct or proxy, got '$mode'" >&2 && exit 2 ;; esac
case $suite in 0.1.16 | 20251125 | 20260728) ;; *) echo "run.sh: suite-id must be 0.1.16, 20251125 or 20260728, got '$suite'" >&2 && exit 2 ;; esac
[[ -n ${OUT:-} ]] || { echo "run.sh: set OUT to the output directory" >&2 && exit 2; }
upstream=${UPSTREAM:-fixture}
case $upstream in fixture | everything) ;; *) echo "run.sh: UPSTREAM must be fixture or everything, got '$upstream'" >&2 && exit 2 ;; esac
scenario_timeout=${SCENARIO_TIMEOUT_MS:-30000}
run_timeout=${RUN_TIMEOUT:-600}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)

# The CLIs come from `make peers` (.peers/bin wrappers running Node 22).
if ! command -v mcp-conformance >/dev/null 2>&1 || ! command -v mcp-conformance-next >/dev/null 2>&1; then
	env_sh=${PEERS_DIR:-$root/.peers}/env.sh
	[[ -f $env_sh ]] || { echo "run.sh: $env_sh is missing; run 'make peers'" >&2 && exit 2; }
	# shellcheck disable=SC1090
	. "$env_sh"
fi
py=${PEERS_PYTHON:-python3}

# Baseline: <upstream>-<suite>-via-proxy.yml for proxy runs when it exists, else <upstream>-<suite>.yml.
if [[ -n ${BASELINE+x} ]]; then
	baseline=$BASELINE
else
	baseline=$here/$upstream-$suite.yml
	if [[ $mode == proxy && -f $here/$upstream-$suite-via-proxy.yml ]]; then
		baseline=$here/$upstream-$suite-via-proxy.yml
	fi
fi
if [[ -n $baseline && $baseline != none && ! -f $baseline ]]; then
	echo "run.sh: baseline $baseline not found" >&2
	exit 2
fi

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
results=$OUT/results
log=$OUT/conformance.log
rm -rf "$results" "$OUT/summary.json"
mkdir -p "$results"

args=(server --url "$url" -o "$results")
revision=
if [[ $suite == 0.1.16 ]]; then
	cli=mcp-conformance # default "active" suite; no --timeout flag in 0.1.16
else
	cli=mcp-conformance-next
	revision=${suite:0:4}-${suite:4:2}-${suite:6:2}
	args+=(--requirements "$revision" --timeout "$scenario_timeout")
fi
if [[ -n $baseline && $baseline != none ]]; then
	args+=(--expected-failures "$baseline")
fi

# Scenarios the requirement set scores (the baseline only applies to those); 0.1.16: all of them.
scored=
if [[ -n $revision ]]; then
	scored=$(timeout 60 "$cli" list --server --requirements "$revision" 2>/dev/null |
		awk '/^Server scenarios/{on=1;next} on&&/^  - /{print $2;next} on&&!/^  - /{on=0}' | paste -sd, -) || scored=
fi

echo "+ $cli ${args[*]}" >"$log"
set +e
timeout -k 10 "$run_timeout" "$cli" "${args[@]}" >>"$log" 2>&1
rc=$?
set -e
[[ $rc -eq 124 ]] && echo "run.sh: conformance run exceeded RUN_TIMEOUT=${run_timeout}s" | tee -a "$log" >&2

MODE=$mode URL=$url SUITE=$suite UPSTREAM_NAME=$upstream CLI=$cli BASELINE_FILE=$baseline RC=$rc SCORED=$scored \
	RESULTS=$results LOG=$log SUMMARY=$OUT/summary.json "$py" - <<'PY' || echo "run.sh: could not write $OUT/summary.json" >&2
import glob, json, os, re

results, log_path = os.environ["RESULTS"], os.environ["LOG"]
dir_re = re.compile(r"^server-(.+)-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z$")
rank = {"FAILURE": 3, "WARNING": 2, "SUCCESS": 1, "SKIPPED": 0, "INFO": 0}

log = re.sub(r"\x1b\[[0-9;]*m", "", open(log_path, encoding="utf-8", errors="replace").read())
ran = re.findall(r"^=== Running scenario: (\S+) ===$", log, re.M)

def section(title):
    m = re.search(r"^" + re.escape(title) + r".*?\n((?:  [~✓✗] .*\n?)*)", log, re.M)
    return [line[4:].strip() for line in m.group(1).splitlines()] if m else []

scenarios, details = {}, {}
for path in sorted(glob.glob(os.path.join(results, "*", "checks.json"))):
    m = dir_re.match(os.path.basename(os.path.dirname(path)))
    if not m:
        continue
    name = m.group(1)
    try:
        checks = json.load(open(path, encoding="utf-8"))
    except (OSError, ValueError):
        checks = []
    worst = {}
    counts = {}
    for c in checks:
        st, cid = c.get("status", "?"), c.get("id", "?")
        counts[st] = counts.get(st, 0) + 1
        if cid not in worst or rank.get(st, 0) > rank.get(worst[cid], 0):
            worst[cid] = st
    failed = [cid for cid, st in worst.items() if st in ("FAILURE", "WARNING")]
    scenarios[name] = "fail" if failed or not checks else "pass"
    details[name] = {"checks": worst, "counts": counts, "failed_checks": failed}
for name in ran:  # the CLI records a crashed scenario as one FAILURE check named after it
    if name not in scenarios:
        scenarios[name] = "fail"
        details[name] = {
            "checks": {name: "FAILURE"},
            "counts": {"FAILURE": 1},
            "failed_checks": [name],
            "note": "scenario crashed; no checks.json (see conformance.log)",
        }

scored = [s for s in os.environ.get("SCORED", "").split(",") if s]
for name, d in details.items():
    d["scored"] = (name in scored) if scored else True

rc = int(os.environ["RC"])
summary = {
    "suite": os.environ["SUITE"],
    "cli": os.environ["CLI"],
    "mode": os.environ["MODE"],
    "upstream": os.environ["UPSTREAM_NAME"],
    "target": os.environ["URL"],
    "baseline": os.environ["BASELINE_FILE"] or "none",
    "exit_code": rc,
    "timed_out": rc == 124,
    "totals": {
        "scenarios": len(scenarios),
        "pass": sum(1 for v in scenarios.values() if v == "pass"),
        "fail": sum(1 for v in scenarios.values() if v == "fail"),
        "checks_passed": sum(d["counts"].get("SUCCESS", 0) for d in details.values()),
        "checks_failed": sum(d["counts"].get("FAILURE", 0) for d in details.values()),
        "checks_warning": sum(d["counts"].get("WARNING", 0) for d in details.values()),
    },
    "scenarios": scenarios,  # scenario -> "pass" | "fail" (fail = any FAILURE or WARNING check)
    "unexpected_failures": section("Unexpected failures"),
    "stale_baseline_entries": section("Stale baseline entries"),
    "expected_failures": section("Expected failures"),
    "details": details,
}
with open(os.environ["SUMMARY"], "w", encoding="utf-8") as f:
    json.dump(summary, f, indent=2, sort_keys=False)
    f.write("\n")
t = summary["totals"]
print(
    f"conformance {summary['suite']} {summary['mode']} {summary['target']}: {t['scenarios']} scenarios, "
    f"{t['pass']} pass, {t['fail']} fail ({t['checks_passed']} checks passed, {t['checks_failed']} failed); "
    f"exit {rc}"
    + (f"; unexpected: {', '.join(summary['unexpected_failures'])}" if summary["unexpected_failures"] else "")
    + (f"; stale: {', '.join(summary['stale_baseline_entries'])}" if summary["stale_baseline_entries"] else "")
)
PY

if ! compgen -G "$results/*/checks.json" >/dev/null; then
	echo "run.sh: the CLI wrote no results (see $log)" >&2
	[[ $rc -ne 0 ]] && exit "$rc"
	exit 3
fi
exit "$rc"
