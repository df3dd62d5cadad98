"""Prints one line per py_client.py report (stdin) for the demo."""
import json
import sys

r = json.load(sys.stdin)
if r.get("tools") is not None:
    print(f"  {len(r['tools'])} tools: " + ", ".join(r["tools"]))
elif r.get("ok"):
    texts = [str(c.get("text", c.get("type"))) for c in r["result"].get("content", [])]
    print("  result: " + " | ".join(texts)[:160])
else:
    e = r.get("error", {})
    print(f"  DENIED: HTTP {e.get('http_status') or 200}, JSON-RPC {e.get('code')} {e.get('message')}")
    if e.get("www_authenticate"):
        print(f"  WWW-Authenticate: {e['www_authenticate']}")
