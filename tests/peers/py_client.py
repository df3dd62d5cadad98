"""Python-SDK (`mcp` 2.3.0) Streamable HTTP test client for mcp-warden's acceptance tests.

Based on shared/reference/mcp-peers/py_client.py. Prints exactly one JSON document on stdout.

    python py_client.py [options] URL list
    python py_client.py [options] URL call     TOOL '{"json":"args"}'
    python py_client.py [options] URL progress TOOL '{"json":"args"}'
    python py_client.py [options] URL resources            # resources/list (every page)
    python py_client.py [options] URL templates            # resources/templates/list
    python py_client.py [options] URL read     URI
    python py_client.py [options] URL prompts              # prompts/list (every page)
    python py_client.py [options] URL prompt   NAME '{"json":"args"}'

Options:
    --token T          send `Authorization: Bearer T` (omit, or "-", for no Authorization header)
    --header 'K: V'    extra request header (repeatable)
    --mode M           legacy | auto | 2026-07-28   (SDK connect mode; default: auto, which
                       tries server/discover and falls back to initialize)
    --timeout S        overall deadline in seconds (default 60)
    --no-callbacks     do not declare sampling / elicitation / roots (by default the client answers
                       them automatically, so MRTR and server-to-client requests complete)

Output (stdout, one JSON object):
    {"ok": true, "action": ..., "protocol_version": "...", "timings_ms": {...},
     "tools": [...names...]                                     # list
     "resources": [...uris...], "templates": [...uriTemplates...], "prompts": [...names...]
     "contents": [{"uri": .., "text" | "blob": ..}, ...]         # read
     "messages": [...]                                          # prompt
     "result": {"isError": bool, "content": [...], ...},        # call / progress
     "progress": [{"t_ms": .., "progress": .., "total": .., "message": ..}, ...],  # progress
     "result_t_ms": ..,                                         # progress: arrival of the result
     "http": [{"method": "POST", "mcp_method": "tools/call", "status": 200}, ...]}
On failure "ok" is false and
    "error": {"code": <JSON-RPC code>, "message": "...", "http_status": 429, "mcp_method": "tools/call",
              "data": ..., "retry_after": "2", "www_authenticate": "...", "exception": "..."}
`code`/`message` come from the JSON-RPC error body of a 4xx/5xx answer when it carries one
(the SDK reports a generic -32603 for non-JSON bodies); `http_status` is the status of the last
non-2xx answer to a POST (the failing JSON-RPC request; ``mcp_method`` names it). Exit status: 0 ok, 1 MCP/HTTP error, 2 usage error, 3 timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

import httpx2  # mcp>=2.0 uses httpx2 (the httpx fork)
import mcp_types as types
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


def _ms(t0: float) -> float:
    return round((time.monotonic() - t0) * 1000.0, 1)


def _dump(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(by_alias=True, mode="json", exclude_none=True)
    return value


class HttpRecorder:
    """httpx2 event hooks: log every exchange; keep the last non-2xx answer with its JSON-RPC body."""

    def __init__(self) -> None:
        self.exchanges: list[dict[str, Any]] = []
        self.last_error: dict[str, Any] | None = None

    async def on_response(self, response: httpx2.Response) -> None:
        req = response.request
        rpc_method = req.headers.get("mcp-method")
        if rpc_method is None and req.method == "POST":
            try:
                body = json.loads(req.content or b"null")
                rpc_method = body.get("method") if isinstance(body, dict) else None
            except Exception:  # noqa: BLE001 - streamed or non-JSON request body
                rpc_method = None
        entry: dict[str, Any] = {"method": req.method, "mcp_method": rpc_method, "status": response.status_code}
        self.exchanges.append(entry)
        if req.method != "POST":  # GET stream refusals (405) and DELETE are not call failures
            return
        if response.status_code < 400:
            self.last_error = None  # an earlier failure was recovered from (e.g. discover fallback)
            return
        err: dict[str, Any] = {"http_status": response.status_code, "mcp_method": rpc_method}
        for header, key in (("retry-after", "retry_after"), ("www-authenticate", "www_authenticate")):
            if header in response.headers:
                err[key] = response.headers[header]
        try:
            await response.aread()  # cached by httpx2, so the SDK can still read the body
            body = json.loads(response.content or b"null")
        except Exception:  # noqa: BLE001 - non-JSON body
            body = None
            err["body"] = (response.text or "")[:500] if response.content is not None else None
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            rpc = body["error"]
            err.update({"code": rpc.get("code"), "message": rpc.get("message")})
            if "data" in rpc:
                err["data"] = rpc["data"]
        self.last_error = err


def _flatten(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        out: list[BaseException] = []
        for sub in exc.exceptions:
            out.extend(_flatten(sub))
        return out
    return [exc]


def _error_doc(exc: BaseException, recorder: HttpRecorder) -> dict[str, Any]:
    leaves = _flatten(exc)
    # Prefer an exception that carries a JSON-RPC code (MCPError), else the first one.
    primary = next((e for e in leaves if isinstance(getattr(e, "code", None), int)), leaves[0])
    err: dict[str, Any] = {
        "exception": f"{type(primary).__module__}.{type(primary).__name__}",
        "code": getattr(primary, "code", None),
        "message": str(primary)[:1000],
    }
    data = getattr(primary, "data", None)
    if data is not None:
        err["data"] = _dump(data)
    wire = recorder.last_error
    if wire is not None:
        # The wire body is authoritative when the SDK only reports a generic error.
        if wire.get("code") is not None:
            err["code"] = wire["code"]
            err["message"] = wire.get("message", err["message"])
            if "data" in wire:
                err["data"] = wire["data"]
        for key in ("http_status", "mcp_method", "retry_after", "www_authenticate", "body"):
            if key in wire:
                err[key] = wire[key]
    if len(leaves) > 1:
        err["all_exceptions"] = [f"{type(e).__name__}: {str(e)[:200]}" for e in leaves]
    return err


# ----- automatic answers to server-to-client requests / MRTR input requests -------------------


async def _sampling(context: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
    return types.CreateMessageResult(
        role="assistant",
        content=types.TextContent(type="text", text="This is a test response from py_client"),
        model="py-client-test-model",
        stop_reason="endTurn",
    )


def _fill(schema: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, prop in (schema.get("properties") or {}).items():
        if "default" in prop:
            out[name] = prop["default"]
            continue
        kind = prop.get("type")
        if kind == "boolean":
            out[name] = True
        elif kind in ("integer", "number"):
            out[name] = 1
        elif kind == "array":
            items = prop.get("items") or {}
            choices = items.get("enum") or [c.get("const") for c in items.get("anyOf", []) if "const" in c]
            out[name] = choices[:1]
        elif "enum" in prop:
            out[name] = prop["enum"][0]
        elif "oneOf" in prop:
            out[name] = prop["oneOf"][0].get("const")
        else:
            out[name] = f"py-client-{name}"
    return out


async def _elicitation(context: Any, params: Any) -> types.ElicitResult:
    schema = getattr(params, "requested_schema", None) or {}
    return types.ElicitResult(action="accept", content=_fill(schema))


async def _roots(context: Any) -> types.ListRootsResult:
    return types.ListRootsResult(roots=[types.Root(uri="file:///tmp/py-client-root", name="py-client root")])


# ----- main --------------------------------------------------------------------------------------


async def run(args: argparse.Namespace, out: dict[str, Any], recorder: HttpRecorder) -> None:
    headers: dict[str, str] = {}
    if args.token and args.token != "-":
        headers["Authorization"] = f"Bearer {args.token}"
    for raw in args.header or []:
        name, sep, value = raw.partition(":")
        if not sep:
            raise SystemExit(f"bad --header {raw!r}: expected 'Name: value'")
        headers[name.strip()] = value.strip()

    callbacks: dict[str, Any] = {}
    if not args.no_callbacks:
        callbacks = {"sampling_callback": _sampling, "elicitation_callback": _elicitation, "list_roots_callback": _roots}

    t0 = time.monotonic()
    timings: dict[str, float] = {}
    out["timings_ms"] = timings
    async with httpx2.AsyncClient(
        headers=headers,
        timeout=httpx2.Timeout(30.0, read=max(30.0, args.timeout)),
        event_hooks={"response": [recorder.on_response]},
    ) as http:
        client = Client(streamable_http_client(args.url, http_client=http), mode=args.mode, cache=None, **callbacks)
        async with client:
            timings["connect"] = _ms(t0)
            out["protocol_version"] = client.protocol_version

            if args.action == "list":
                t = time.monotonic()
                tools = await client.list_tools()
                timings["list"] = _ms(t)
                out["tools"] = [tool.name for tool in tools.tools]
                out["tool_count"] = len(tools.tools)
                return

            if args.action in ("resources", "templates", "prompts"):
                t = time.monotonic()
                names: list[str] = []
                cursor: str | None = None
                while True:
                    if args.action == "resources":
                        page: Any = await client.list_resources(cursor=cursor)
                        names += [str(r.uri) for r in page.resources]
                    elif args.action == "templates":
                        page = await client.list_resource_templates(cursor=cursor)
                        names += [t.uri_template for t in page.resource_templates]
                    else:
                        page = await client.list_prompts(cursor=cursor)
                        names += [p.name for p in page.prompts]
                    cursor = page.next_cursor
                    if not cursor:
                        break
                timings[args.action] = _ms(t)
                out[args.action] = names
                return
            if args.action == "read":
                t = time.monotonic()
                read = await client.read_resource(args.tool)
                timings["read"] = _ms(t)
                out["contents"] = [_dump(c) for c in read.contents]
                return

            tool_args = json.loads(args.args) if args.args else {}
            if not isinstance(tool_args, dict):
                raise SystemExit("tool arguments must be a JSON object")
            if args.action == "prompt":
                t = time.monotonic()
                prompt = await client.get_prompt(args.tool, {k: str(v) for k, v in tool_args.items()})
                timings["prompt"] = _ms(t)
                out["messages"] = [_dump(m) for m in prompt.messages]
                return
            progress: list[dict[str, Any]] = []
            t_call = time.monotonic()

            async def on_progress(value: float, total: float | None, message: str | None) -> None:
                progress.append({"t_ms": _ms(t_call), "progress": value, "total": total, "message": message})

            result = await client.call_tool(
                args.tool,
                tool_args,
                progress_callback=on_progress if args.action == "progress" else None,
            )
            timings["call"] = _ms(t_call)
            out["result"] = _dump(result)
            if args.action == "progress":
                out["progress"] = progress
                out["result_t_ms"] = timings["call"]
    timings["total"] = _ms(t0)


def main() -> int:
    parser = argparse.ArgumentParser(description="mcp-warden Python SDK test client", allow_abbrev=False)
    parser.add_argument("--token", default=None, help='bearer token ("-" or omitted: none)')
    parser.add_argument("--header", action="append", help="extra header 'Name: value' (repeatable)")
    parser.add_argument("--mode", default="auto", help="legacy | auto | 2026-07-28 (default auto)")
    parser.add_argument("--timeout", type=float, default=60.0, help="overall deadline in seconds")
    parser.add_argument("--no-callbacks", action="store_true", help="no sampling/elicitation/roots support")
    parser.add_argument("url")
    parser.add_argument(
        "action", choices=["list", "call", "progress", "resources", "templates", "read", "prompts", "prompt"]
    )
    parser.add_argument("tool", nargs="?", help="the tool (call, progress), URI (read) or prompt (prompt)")
    parser.add_argument("args", nargs="?", default="{}")
    args = parser.parse_args()
    if args.action not in ("list", "resources", "templates", "prompts") and not args.tool:
        parser.error(f"{args.action} needs a TOOL argument")

    out: dict[str, Any] = {"ok": False, "action": args.action, "url": args.url, "mode": args.mode}
    if args.tool:
        out["tool"] = args.tool
    recorder = HttpRecorder()
    code = 0
    try:
        asyncio.run(asyncio.wait_for(run(args, out, recorder), timeout=args.timeout))
        out["ok"] = True
    except SystemExit as exc:
        out["error"] = {"message": str(exc), "code": None}
        code = 2
    except (TimeoutError, asyncio.TimeoutError):
        out["error"] = {"message": f"timed out after {args.timeout}s", "code": None, "timeout": True}
        if recorder.last_error:
            out["error"].update({k: v for k, v in recorder.last_error.items() if k != "body"})
        code = 3
    except BaseException as exc:  # noqa: BLE001 - report whatever surfaced, as JSON
        if isinstance(exc, KeyboardInterrupt):
            raise
        out["error"] = _error_doc(exc, recorder)
        code = 1
    out["http"] = recorder.exchanges
    print(json.dumps(out, sort_keys=False))
    return code


if __name__ == "__main__":
    sys.exit(main())
