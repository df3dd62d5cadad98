"""Summarises the demo's OCSF audit records, one line each, and prints one record in full."""
import json
import sys

records = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8") if line.strip()]
for r in records:
    m = r.get("unmapped", {}).get("mcp_warden", {})
    api = r.get("api", {})
    tool = (r.get("resources") or [{}])[0].get("name", "-")
    actor = r.get("actor", {}).get("user", {}).get("name", "-")
    print(f"  seq {r['metadata']['sequence']:>3}  {m.get('outcome', '?'):<12} {actor:<22} {api.get('operation', '-'):<11} "
          f"{tool:<26} {r.get('disposition', '-'):<8} {r.get('status_code', '')}")
calls = [r for r in records if r.get("api", {}).get("request", {}).get("data")]
if calls:
    print("\n  one record in full (note the redacted argument):")
    print("  " + json.dumps(calls[0], indent=None)[:1500])
