"""Prints one line per py_client.py report (stdin) for the demo."""
import json
import sys

r = json.load(sys.stdin)
if r.get("tools") is not None:
    print(f"  {len(r['tools'])} tools: " + ", ".join(r["tools"]))
elif any(r.get(k) is not None for k in ("resources", "templates", "prompts")):
    kind = next(k for k in ("resources", "templates", "prompts") if r.get(k) is not None)
    print(f"  {len(r[kind])} {kind}: " + ", ".join(r[kind]))
elif r.get("contents") is not None:
    for c in r["contents"]:
        body = c.get("text", c.get("blob", ""))
        print(f"  {c.get('uri')} ({c.get('mimeType', '?')}, {len(body)} chars): " + body[:80].replace("\n", " ") + "...")
elif r.get("messages") is not None:
    for m in r["messages"]:
        content = m.get("content", {})
        print(f"  {m.get('role')}: " + str(content.get("text", content.get("type")))[:120])
elif r.get("ok"):
    texts = [str(c.get("text", c.get("type"))) for c in r["result"].get("content", [])]
    print("  result: " + " | ".join(texts)[:160])
else:
    e = r.get("error", {})
    print(f"  DENIED: HTTP {e.get('http_status') or 200}, JSON-RPC {e.get('code')} {e.get('message')}")
    if e.get("www_authenticate"):
        print(f"  WWW-Authenticate: {e['www_authenticate']}")
