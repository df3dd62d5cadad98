"""MCP conformance fixture server for mcp-warden's acceptance tests.

Written with the Python `mcp` 2.3.0 SDK (`MCPServer`, plus a few low-level handlers). It
implements every tool, resource, prompt and diagnostic hook that the server scenarios of
`@modelcontextprotocol/conformance` 0.1.16 and 0.2.0-alpha.12 call, for both protocol eras on
one endpoint (`/mcp`):

* 2025-11-25 and earlier (legacy): `initialize`, `Mcp-Session-Id` sessions (DELETE, 404 after
  termination), SSE responses with an in-memory event store (resumability, SEP-1699 polling via
  `test_reconnection`), server-to-client requests (sampling, elicitation, roots),
  `logging/setLevel` (per session), `resources/(un)subscribe`, `completion/complete`.
* 2026-07-28 (modern, stateless): `server/discover`, per-request `_meta`, MRTR
  (`resultType: "input_required"`, requestState sealed by the SDK), `subscriptions/listen`,
  caching hints (`ttlMs` / `cacheScope: "public"`), `-32021` missing-capability errors,
  `Mcp-Method` / `Mcp-Name` / `Mcp-Param-*` header validation (`test_custom_headers` carries an
  `x-mcp-header` parameter), and the tasks extension `io.modelcontextprotocol/tasks` (SEP-2663,
  implemented here on the SDK's Extension seam: `tasks/get|update|cancel`, `slow_compute`, ...).
  The MRTR tools also work on the legacy era: their input requests are then sent to the client
  as ordinary server-to-client requests.

It validates `Host` and `Origin` itself (DNS-rebinding protection, answered with 403 and a
JSON-RPC error body) instead of relying on the SDK's transport-security middleware.

Usage:
    python fixture_server.py [PORT]          # or env PORT; 0 (the default) picks a free port
Binds 127.0.0.1 only and prints `READY http://127.0.0.1:<port>/mcp` on stdout once it accepts
connections. SIGTERM / SIGINT stop it (graceful shutdown bounded to ~2 s).

Env:
    PORT                      port (argv[1] wins)
    FIXTURE_ALLOWED_HOSTS     extra comma-separated host names accepted in Host/Origin
                              (localhost, 127.0.0.1 and [::1] are always accepted)
    FIXTURE_LOG_LEVEL         uvicorn/SDK log level (default WARNING)
    FIXTURE_PAGE_SIZE         when set (N > 0), `resources/list`, `resources/templates/list` and
                              `prompts/list` answer N entries a page with a `nextCursor` (the
                              offset); unset, one page as the SDK answers it

Test hooks beyond the conformance names: `test_tool_with_progress` takes an optional `delay_ms`
(pause between its three progress notifications, default 50), `test_trigger_tool_change` /
`test_trigger_prompt_change` take `keep` (toggle the dynamic entry persistently instead of
add-then-remove), `greet(name)` is a plain synchronous tool, `test_resource_updated(uris)` sends
`notifications/resources/updated` for each URI on the calling request's stream, and
`test_detached_request(kind)` sends `roots/list`, `elicitation/create` or
`sampling/createMessage` tied to no request (so on the session's GET stream) and reports how the
client answered it.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import socket
import sys
import time
import uuid
import warnings
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import Annotated, Any

import mcp_types as types
import uvicorn
from mcp.server import MCPServer
from mcp.server.caching import CacheHint
from mcp.server.extension import Extension, MethodBinding
from mcp.server.mcpserver import Context
from mcp.server.streamable_http import EventCallback, EventMessage, EventStore
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp.shared.message import ServerMessageMetadata
from mcp_types import (
    AudioContent,
    CallToolResult,
    Completion,
    EmbeddedResource,
    ImageContent,
    InputRequiredResult,
    TextContent,
    TextResourceContents,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import Field

warnings.simplefilter("ignore", MCPDeprecationWarning)

SERVER_NAME = "mcp-warden-conformance-fixture"
MCP_PATH = "/mcp"

# 1x1 red PNG and a minimal WAV (same bytes as the conformance suite's reference fixture).
PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
WAV_B64 = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA="

JSON_SCHEMA_2020_12 = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {
        "address": {
            "$anchor": "addressDef",
            "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
        }
    },
    "properties": {
        "name": {"type": "string"},
        "address": {"$ref": "#/$defs/address"},
        "contactMethod": {"type": "string", "enum": ["phone", "email"]},
        "phone": {"type": "string"},
        "email": {"type": "string"},
    },
    "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
    "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
    "then": {"required": ["phone"]},
    "else": {"required": ["email"]},
    "additionalProperties": False,
}

LOG_LEVELS = ["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"]


# ---------------------------------------------------------------------------------------------
# Event store (legacy SSE resumability, SEP-1699 polling)
# ---------------------------------------------------------------------------------------------


class InMemoryEventStore(EventStore):
    """Keeps every event in memory; ids are `<stream>::<seq>` so replay can find the stream."""

    def __init__(self, max_events: int = 10_000) -> None:
        self._events: list[tuple[str, str, types.JSONRPCMessage | None]] = []  # (event_id, stream, msg)
        self._seq = itertools.count(1)
        self._max = max_events

    async def store_event(self, stream_id: str, message: types.JSONRPCMessage | None) -> str:
        event_id = f"{stream_id}::{next(self._seq):012d}"
        self._events.append((event_id, stream_id, message))
        if len(self._events) > self._max:
            del self._events[: len(self._events) - self._max]
        return event_id

    async def replay_events_after(self, last_event_id: str, send_callback: EventCallback) -> str | None:
        stream_id = last_event_id.split("::", 1)[0]
        if not any(eid == last_event_id for eid, _, _ in self._events):
            return None
        found = False
        for eid, sid, msg in list(self._events):
            if eid == last_event_id:
                found = True
                continue
            if found and sid == stream_id and msg is not None:
                await send_callback(EventMessage(msg, eid))
        return stream_id


# ---------------------------------------------------------------------------------------------
# Host / Origin validation (DNS-rebinding protection), done here rather than by the SDK
# ---------------------------------------------------------------------------------------------


def _split_host(value: str) -> str:
    """`host[:port]` -> lower-case host name (IPv6 literals keep their brackets)."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        return value[: end + 1] if end > 0 else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class HostOriginGuard:
    """ASGI middleware: 403 + JSON-RPC error unless Host (and Origin, when sent) name loopback."""

    def __init__(self, app: Any, extra_hosts: list[str]) -> None:
        self.app = app
        self.allowed = {"localhost", "127.0.0.1", "[::1]"} | {h.strip().lower() for h in extra_hosts if h.strip()}

    def _origin_ok(self, origin: str) -> bool:
        if origin == "null":
            return False
        scheme, sep, rest = origin.partition("://")
        if not sep or scheme not in ("http", "https"):
            return False
        return _split_host(rest.split("/", 1)[0]) in self.allowed

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = headers.get("host", "")
        origin = headers.get("origin")
        reason = None
        if not host or _split_host(host) not in self.allowed:
            reason = f"Forbidden: invalid Host header {host!r}"
        elif origin is not None and not self._origin_ok(origin):
            reason = f"Forbidden: invalid Origin header {origin!r}"
        if reason is None:
            await self.app(scope, receive, send)
            return
        body = json.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": reason}}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 403,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


# ---------------------------------------------------------------------------------------------
# Tasks extension (SEP-2663, `io.modelcontextprotocol/tasks`), hand-written: the SDK ships the
# Extension seam (methods + tools/call interceptor) but no tasks implementation.
# ---------------------------------------------------------------------------------------------

TASKS_EXT = "io.modelcontextprotocol/tasks"
TASK_TTL_MS = 300_000
TASK_POLL_MS = 200
TERMINAL = ("completed", "failed", "cancelled")


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Task:
    def __init__(self) -> None:
        self.task_id = f"task-{uuid.uuid4()}"
        self.status = "working"
        self.created_at = self.updated_at = _now_iso()
        self.result: dict[str, Any] | None = None
        self.error: dict[str, Any] | None = None
        self.input_requests: dict[str, Any] = {}
        self.input_responses: dict[str, Any] = {}
        self.input_ready = asyncio.Event()
        self.runner: asyncio.Task[None] | None = None
        self.expires = time.monotonic() + TASK_TTL_MS / 1000

    def set_status(self, status: str) -> None:
        if self.status in TERMINAL:
            return
        self.status = status
        self.updated_at = _now_iso()

    def envelope(self) -> dict[str, Any]:
        return {
            "taskId": self.task_id,
            "status": self.status,
            "createdAt": self.created_at,
            "lastUpdatedAt": self.updated_at,
            "ttlMs": TASK_TTL_MS,
            "pollIntervalMs": TASK_POLL_MS,
        }

    def detailed(self) -> dict[str, Any]:
        out = {"resultType": "complete", **self.envelope()}
        if self.status == "completed" and self.result is not None:
            out["result"] = self.result
        if self.status == "failed" and self.error is not None:
            out["error"] = self.error
        if self.status == "input_required" and self.input_requests:
            out["inputRequests"] = self.input_requests
        return out

    async def ask(self, requests: dict[str, Any]) -> dict[str, Any]:
        """Park the task in input_required until every key is answered via tasks/update."""
        keys = list(requests)
        self.input_requests.update({k: _dump(v) for k, v in requests.items()})
        self.input_ready.clear()
        self.set_status("input_required")
        while any(k not in self.input_responses for k in keys):
            await self.input_ready.wait()
            self.input_ready.clear()
        self.set_status("working")
        return {k: self.input_responses.pop(k) for k in keys}


_tasks: dict[str, _Task] = {}


def _gc_tasks() -> None:
    now = time.monotonic()
    for tid in [tid for tid, t in _tasks.items() if t.expires < now and t.status in TERMINAL]:
        del _tasks[tid]


def _client_has_tasks(ctx: Any) -> bool:
    caps = getattr(ctx.session, "client_capabilities", None)
    return bool(caps is not None and caps.extensions and TASKS_EXT in caps.extensions)


def _missing_tasks_capability() -> MCPError:
    return MCPError(
        code=types.MISSING_REQUIRED_CLIENT_CAPABILITY,
        message=f"Client did not declare the required extension {TASKS_EXT!r}",
        data={"requiredCapabilities": {"extensions": {TASKS_EXT: {}}}},
    )


def _result_dict(result: CallToolResult) -> dict[str, Any]:
    out = result.model_dump(by_alias=True, mode="json", exclude_none=True)
    out.pop("resultType", None)
    out.setdefault("isError", False)
    return out


def _start_task(body: Callable[[_Task], Awaitable[CallToolResult]]) -> dict[str, Any]:
    _gc_tasks()
    task = _Task()
    _tasks[task.task_id] = task  # durable before the CreateTaskResult is returned

    async def run() -> None:
        try:
            res = await body(task)
            task.result = _result_dict(res)
            task.set_status("completed")
        except asyncio.CancelledError:
            task.set_status("cancelled")
        except MCPError as exc:
            task.error = {"code": exc.error.code, "message": exc.error.message}
            task.set_status("failed")
        except Exception as exc:  # noqa: BLE001 - protocol-level failure of the job
            task.error = {"code": types.INTERNAL_ERROR, "message": f"Task failed: {exc}"}
            task.set_status("failed")

    task.runner = asyncio.get_running_loop().create_task(run())
    return {"resultType": "task", **task.envelope()}


class _TaskParams(types.RequestParams):
    model_config = {**types.RequestParams.model_config, "extra": "allow"}
    task_id: str | None = None
    input_responses: dict[str, Any] | None = None


def _lookup(ctx: Any, params: _TaskParams) -> _Task:
    if not _client_has_tasks(ctx):
        raise _missing_tasks_capability()
    headers = getattr(getattr(ctx, "request", None), "headers", None)
    header_name = headers.get("mcp-name") if headers is not None else None
    if header_name is not None and header_name.strip() != (params.task_id or ""):
        raise MCPError(code=types.HEADER_MISMATCH, message="Mcp-Name header does not match params.taskId")
    task = _tasks.get(params.task_id or "")
    if task is None:
        raise MCPError(code=types.INVALID_PARAMS, message="Unknown taskId", data={"taskId": params.task_id})
    return task


async def _tasks_get(ctx: Any, params: _TaskParams) -> dict[str, Any]:
    return _lookup(ctx, params).detailed()


async def _tasks_update(ctx: Any, params: _TaskParams) -> dict[str, Any]:
    task = _lookup(ctx, params)
    for key, value in (params.input_responses or {}).items():
        if key in task.input_requests:  # unknown keys are ignored
            task.input_requests.pop(key)
            task.input_responses[key] = value
    task.input_ready.set()
    return {"resultType": "complete"}


async def _tasks_cancel(ctx: Any, params: _TaskParams) -> dict[str, Any]:
    task = _lookup(ctx, params)
    if task.status not in TERMINAL:
        task.set_status("cancelled")
        if task.runner is not None:
            task.runner.cancel()
    return {"resultType": "complete"}


# Task bodies. Sync fallbacks live in the tool functions further down.


def _elicit_answer(value: Any, field: str) -> Any:
    if isinstance(value, dict) and value.get("action") == "accept":
        return (value.get("content") or {}).get(field)
    return None


async def _slow_compute_body(task: _Task, seconds: float, label: str) -> CallToolResult:
    await asyncio.sleep(max(0.0, float(seconds)))
    return _text(f"Computed {label} after {seconds}s")


async def _failing_job_body(task: _Task) -> CallToolResult:
    await asyncio.sleep(1.0)
    return CallToolResult(content=[TextContent(type="text", text="failing_job: the job reported an error")], is_error=True)


async def _protocol_error_body(task: _Task) -> CallToolResult:
    await asyncio.sleep(0.2)
    raise MCPError(code=types.INTERNAL_ERROR, message="protocol_error_job: internal failure")


CONFIRM_DELETE_SCHEMA = {"type": "object", "properties": {"confirm": {"type": "boolean"}}, "required": ["confirm"]}


async def _confirm_delete_body(task: _Task, filename: str) -> CallToolResult:
    key = f"confirm-{uuid.uuid4().hex[:8]}"
    answers = await task.ask({key: _elicit_req(f"Delete {filename}?", CONFIRM_DELETE_SCHEMA)})
    confirmed = bool(_elicit_answer(answers[key], "confirm"))
    return _text(f"{'Deleted' if confirmed else 'Kept'} {filename}")


async def _multi_input_body(task: _Task) -> CallToolResult:
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "confirm": {"type": "boolean"}}}
    k1, k2 = f"first-{uuid.uuid4().hex[:8]}", f"second-{uuid.uuid4().hex[:8]}"
    answers = await task.ask({k1: _elicit_req("First input", schema), k2: _elicit_req("Second input", schema)})
    return _text(f"multi_input complete: {_elicit_answer(answers[k1], 'name')}, {_elicit_answer(answers[k2], 'name')}")


async def _greeting_task_body(task: _Task, name: str) -> CallToolResult:
    await asyncio.sleep(0.2)
    return _text(f"Hello, {name}! (completed as a task)")


TASK_SUPPORT = {  # tool -> "optional" | "required"
    "slow_compute": "optional",
    "failing_job": "required",
    "protocol_error_job": "optional",
    "confirm_delete": "optional",
    "multi_input": "optional",
    "test_tool_with_task": "required",
}


class TasksExtension(Extension):
    identifier = TASKS_EXT

    def methods(self) -> list[MethodBinding]:
        modern = frozenset(MODERN_PROTOCOL_VERSIONS)
        return [
            MethodBinding("tasks/get", _TaskParams, _tasks_get, modern),
            MethodBinding("tasks/update", _TaskParams, _tasks_update, modern),
            MethodBinding("tasks/cancel", _TaskParams, _tasks_cancel, modern),
        ]

    async def intercept_tool_call(self, params: Any, ctx: Any, call_next: Any) -> Any:
        support = TASK_SUPPORT.get(params.name)
        if support is None or ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            return await call_next(ctx)
        if not _client_has_tasks(ctx):
            if support == "required":
                raise _missing_tasks_capability()
            return await call_next(ctx)  # task-optional tool: synchronous execution
        args = dict(params.arguments or {})
        if params.name == "slow_compute":
            return _start_task(lambda t: _slow_compute_body(t, args.get("seconds", 0), str(args.get("label", ""))))
        if params.name == "failing_job":
            return _start_task(_failing_job_body)
        if params.name == "protocol_error_job":
            return _start_task(_protocol_error_body)
        if params.name == "confirm_delete":
            return _start_task(lambda t: _confirm_delete_body(t, str(args.get("filename", "file"))))
        if params.name == "multi_input":
            return _start_task(_multi_input_body)
        # test_tool_with_task: MRTR round(s) first, then escalate to a task on the final round.
        name = _elicited_field((params.input_responses or {}).get("user_name"), "name")
        if name is None:
            return InputRequiredResult(input_requests={"user_name": _elicit_req("What is your name?", NAME_SCHEMA)})
        return _start_task(lambda t: _greeting_task_body(t, name))


# ---------------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------------


# Caching hints (2026-07-28): every cacheable result says ttlMs=30000, cacheScope="public" (the
# fixture's lists do not depend on the caller; a filtering proxy must turn them "private").
app: MCPServer = MCPServer(
    SERVER_NAME,
    version="1.0.0",
    instructions="Conformance fixture for mcp-warden acceptance tests.",
    log_level=os.environ.get("FIXTURE_LOG_LEVEL", "WARNING").upper(),  # type: ignore[arg-type]
    extensions=[TasksExtension()],
    cache_hints={
        "tools/list": CacheHint(ttl_ms=30_000, scope="public"),
        "prompts/list": CacheHint(ttl_ms=30_000, scope="public"),
        "resources/list": CacheHint(ttl_ms=30_000, scope="public"),
        "resources/templates/list": CacheHint(ttl_ms=30_000, scope="public"),
        "resources/read": CacheHint(ttl_ms=30_000, scope="public"),
        "server/discover": CacheHint(ttl_ms=30_000, scope="public"),
    },
)
_low = app._lowlevel_server  # noqa: SLF001 - the few legacy-only handlers MCPServer doesn't wire

_state: dict[str, Any] = {"log_levels": {}, "subscriptions": {}}


def _session_key(request_ctx: Any) -> str:
    """Legacy-era per-session key (the Mcp-Session-Id header); "" when there is none."""
    headers = getattr(getattr(request_ctx, "request", None), "headers", None)
    return (headers.get("mcp-session-id") if headers is not None else None) or ""


def _modern(ctx: Context) -> bool:
    return ctx.protocol_version in MODERN_PROTOCOL_VERSIONS


def _caps(ctx: Context) -> types.ClientCapabilities | None:
    try:
        return ctx.client_capabilities
    except Exception:  # noqa: BLE001
        return None


def _text(text: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)])


async def _log(ctx: Context, level: str, message: str) -> None:
    """Send notifications/message honouring logging/setLevel (legacy) or _meta logLevel (modern)."""
    if not _modern(ctx):
        threshold = _state["log_levels"].get(_session_key(ctx.request_context), "debug")
        if LOG_LEVELS.index(level) < LOG_LEVELS.index(threshold):
            return
    await ctx.log(level, message, logger_name="conformance-fixture")  # type: ignore[arg-type]


def _elicit_req(message: str, schema: dict[str, Any]) -> types.ElicitRequest:
    return types.ElicitRequest(params=types.ElicitRequestFormParams(message=message, requested_schema=schema))


def _sampling_req(text: str, max_tokens: int) -> types.CreateMessageRequest:
    return types.CreateMessageRequest(
        params=types.CreateMessageRequestParams(
            messages=[types.SamplingMessage(role="user", content=TextContent(type="text", text=text))],
            max_tokens=max_tokens,
        )
    )


def _roots_req() -> types.ListRootsRequest:
    return types.ListRootsRequest()


def _dump(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(by_alias=True, mode="json", exclude_none=True)
    return value


def _elicit_content(resp: Any) -> tuple[str, dict[str, Any]]:
    if isinstance(resp, types.ElicitResult):
        return resp.action, dict(resp.content or {})
    raise TypeError("not an elicitation result")


def _sampling_text(resp: Any) -> str:
    content = getattr(resp, "content", None)
    if isinstance(content, list):
        content = content[0] if content else None
    return getattr(content, "text", None) or "No response"


NAME_SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}


# ----- 2025-11-25 content tools --------------------------------------------------------------


@app.tool(description="Tests simple text content response")
def test_simple_text() -> CallToolResult:
    return _text("This is a simple text response for testing.")


@app.tool(description="Tests image content response")
def test_image_content() -> CallToolResult:
    return CallToolResult(content=[ImageContent(type="image", data=PNG_B64, mime_type="image/png")])


@app.tool(description="Tests audio content response")
def test_audio_content() -> CallToolResult:
    return CallToolResult(content=[AudioContent(type="audio", data=WAV_B64, mime_type="audio/wav")])


@app.tool(description="Tests embedded resource content response")
def test_embedded_resource() -> CallToolResult:
    return CallToolResult(
        content=[
            EmbeddedResource(
                type="resource",
                resource=TextResourceContents(
                    uri="test://embedded-resource", mime_type="text/plain", text="This is an embedded resource content."
                ),
            )
        ]
    )


@app.tool(description="Tests response with multiple content types (text, image, resource)")
def test_multiple_content_types() -> CallToolResult:
    return CallToolResult(
        content=[
            TextContent(type="text", text="Multiple content types test:"),
            ImageContent(type="image", data=PNG_B64, mime_type="image/png"),
            EmbeddedResource(
                type="resource",
                resource=TextResourceContents(
                    uri="test://mixed-content-resource",
                    mime_type="application/json",
                    text=json.dumps({"test": "data", "value": 123}, separators=(",", ":")),
                ),
            ),
        ]
    )


@app.tool(description="Tests tool that emits log messages during execution")
async def test_tool_with_logging(ctx: Context) -> CallToolResult:
    await _log(ctx, "info", "Tool execution started")
    await asyncio.sleep(0.05)
    await _log(ctx, "info", "Tool processing data")
    await asyncio.sleep(0.05)
    await _log(ctx, "info", "Tool execution completed")
    return _text("Tool with logging executed successfully")


def _progress_token(ctx: Context) -> Any:
    meta = ctx.request_context.meta
    if isinstance(meta, dict):
        return meta.get("progressToken", meta.get("progress_token"))
    return getattr(meta, "progress_token", None)


@app.tool(description="Tests tool that reports progress notifications (0, 50, 100 of 100, ~delay_ms apart)")
async def test_tool_with_progress(
    ctx: Context,
    delay_ms: Annotated[int, Field(description="Pause between progress notifications (ms)", ge=0, le=10_000)] = 50,
) -> CallToolResult:
    token = _progress_token(ctx)
    for step, value in enumerate((0, 50, 100)):
        if step:
            await asyncio.sleep(delay_ms / 1000)
        await ctx.report_progress(value, 100, f"Completed step {value} of 100")
    return _text(str(token if token is not None else "no progress token"))


@app.tool(description="Tests error response handling")
def test_error_handling() -> CallToolResult:
    # Returned rather than raised: MCPServer prefixes a raised ToolError's text with
    # "Error executing tool ...", and the scenario documents the bare message.
    return CallToolResult(
        content=[TextContent(type="text", text="This tool intentionally returns an error for testing")], is_error=True
    )


@app.tool(
    description=(
        "Tests SSE stream disconnection and client reconnection (SEP-1699). The server closes the "
        "stream mid-call and sends the result after the client reconnects."
    )
)
async def test_reconnection(ctx: Context) -> CallToolResult:
    await ctx.close_sse_stream()
    await asyncio.sleep(0.1)
    return _text(
        "Reconnection test completed successfully. If you received this, the client properly "
        "reconnected after stream closure."
    )


# ----- server-to-client requests (legacy) / MRTR (modern) ------------------------------------


@app.tool(description="Tests server-initiated sampling (LLM completion request)")
async def test_sampling(
    ctx: Context, prompt: Annotated[str, Field(description="The prompt to send to the LLM")]
) -> CallToolResult | InputRequiredResult:
    if _modern(ctx):
        responses = ctx.input_responses or {}
        if "sampling" in responses:
            return _text(f"LLM response: {_sampling_text(responses['sampling'])}")
        return InputRequiredResult(input_requests={"sampling": _sampling_req(prompt, 100)})
    result = await ctx.session.create_message(
        messages=[types.SamplingMessage(role="user", content=TextContent(type="text", text=prompt))],
        max_tokens=100,
        related_request_id=ctx.request_context.request_id,
    )
    return _text(f"LLM response: {_sampling_text(result)}")


ELICITATION_SCHEMA = {
    "type": "object",
    "properties": {
        "username": {"type": "string", "description": "User's response"},
        "email": {"type": "string", "description": "User's email address"},
    },
    "required": ["username", "email"],
}

SEP1034_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "description": "User name", "default": "John Doe"},
        "age": {"type": "integer", "description": "User age", "default": 30},
        "score": {"type": "number", "description": "User score", "default": 95.5},
        "status": {
            "type": "string",
            "description": "User status",
            "enum": ["active", "inactive", "pending"],
            "default": "active",
        },
        "verified": {"type": "boolean", "description": "Verification status", "default": True},
    },
    "required": [],
}

SEP1330_SCHEMA = {
    "type": "object",
    "properties": {
        "untitledSingle": {
            "type": "string",
            "description": "Choose an option",
            "enum": ["option1", "option2", "option3"],
        },
        "titledSingle": {
            "type": "string",
            "description": "Choose a titled option",
            "oneOf": [
                {"const": "value1", "title": "First Option"},
                {"const": "value2", "title": "Second Option"},
                {"const": "value3", "title": "Third Option"},
            ],
        },
        "legacyEnum": {
            "type": "string",
            "description": "Choose a legacy option",
            "enum": ["opt1", "opt2", "opt3"],
            "enumNames": ["Option One", "Option Two", "Option Three"],
        },
        "untitledMulti": {
            "type": "array",
            "description": "Choose multiple options",
            "items": {"type": "string", "enum": ["option1", "option2", "option3"]},
        },
        "titledMulti": {
            "type": "array",
            "description": "Choose multiple titled options",
            "items": {
                "anyOf": [
                    {"const": "value1", "title": "First Choice"},
                    {"const": "value2", "title": "Second Choice"},
                    {"const": "value3", "title": "Third Choice"},
                ]
            },
        },
    },
    "required": [],
}


async def _elicit_either_era(ctx: Context, message: str, schema: dict[str, Any], prefix: str):
    """Legacy: elicitation/create over the session. Modern: MRTR round trip (key `elicitation`)."""
    if _modern(ctx):
        responses = ctx.input_responses or {}
        if "elicitation" in responses:
            action, content = _elicit_content(responses["elicitation"])
            return _text(f"{prefix}: action={action}, content={json.dumps(content, separators=(',', ':'))}")
        return InputRequiredResult(input_requests={"elicitation": _elicit_req(message, schema)})
    result = await ctx.session.elicit_form(message, schema, related_request_id=ctx.request_context.request_id)
    content = json.dumps(result.content or {}, separators=(",", ":"))
    return _text(f"{prefix}: action={result.action}, content={content}")


@app.tool(description="Tests server-initiated elicitation (user input request)")
async def test_elicitation(
    ctx: Context, message: Annotated[str, Field(description="The message to show the user")]
) -> CallToolResult | InputRequiredResult:
    return await _elicit_either_era(ctx, message, ELICITATION_SCHEMA, "User response")


@app.tool(description="Tests elicitation with default values per SEP-1034")
async def test_elicitation_sep1034_defaults(ctx: Context) -> CallToolResult | InputRequiredResult:
    return await _elicit_either_era(
        ctx, "Please review and update the form fields with defaults", SEP1034_SCHEMA, "Elicitation completed"
    )


@app.tool(description="Tests elicitation with enum schema improvements per SEP-1330")
async def test_elicitation_sep1330_enums(ctx: Context) -> CallToolResult | InputRequiredResult:
    return await _elicit_either_era(
        ctx, "Please select options from the enum fields", SEP1330_SCHEMA, "Elicitation completed"
    )


# ----- JSON Schema 2020-12 (SEP-1613 / SEP-2106) ---------------------------------------------


@app.tool(description="Tool with JSON Schema 2020-12 features for conformance testing (SEP-1613, SEP-2106)")
def json_schema_2020_12_tool(
    name: str | None = None,
    address: dict[str, Any] | None = None,
    contactMethod: str | None = None,  # noqa: N803 - wire name
    phone: str | None = None,
    email: str | None = None,
) -> CallToolResult:
    args = {"name": name, "address": address, "contactMethod": contactMethod, "phone": phone, "email": email}
    return _text(f"JSON Schema 2020-12 tool called with: {json.dumps({k: v for k, v in args.items() if v is not None})}")


app._tool_manager.get_tool("json_schema_2020_12_tool").parameters = JSON_SCHEMA_2020_12  # noqa: SLF001


# ----- 2026-07-28 MRTR tools (SEP-2322) ------------------------------------------------------


# On the legacy era the MRTR tools below still work: `_mrtr` runs the same round function,
# fulfils each InputRequiredResult with real server-to-client requests over the session and
# feeds the answers back in (through this context variable) until the round completes.
_legacy_round: ContextVar[tuple[dict[str, Any], str | None] | None] = ContextVar("_legacy_round", default=None)


def _responses(ctx: Context) -> dict[str, Any]:
    override = _legacy_round.get()
    if override is not None:
        return dict(override[0])
    return dict(ctx.input_responses or {})


def _req_state(ctx: Context) -> str | None:
    override = _legacy_round.get()
    if override is not None:
        return override[1]
    return ctx.request_state


_RESULT_TYPES: dict[str, type[Any]] = {
    "elicitation/create": types.ElicitResult,
    "sampling/createMessage": types.CreateMessageResult,
    "roots/list": types.ListRootsResult,
}


async def _legacy_fulfil(ctx: Context, requests: dict[str, Any]) -> dict[str, Any]:
    answers: dict[str, Any] = {}
    for key, request in requests.items():
        answers[key] = await ctx.session.send_request(
            request,
            _RESULT_TYPES[request.method],
            metadata=ServerMessageMetadata(related_request_id=ctx.request_context.request_id),
        )
    return answers


async def _mrtr(ctx: Context, round_fn: Callable[[Context], Awaitable[Any]]) -> Any:
    """Modern era: one round per wire request. Legacy era: loop the rounds in-process."""
    if _modern(ctx):
        return await round_fn(ctx)
    token = _legacy_round.set(None)
    try:
        for _ in range(8):
            result = await round_fn(ctx)
            if not isinstance(result, InputRequiredResult):
                return result
            answers = await _legacy_fulfil(ctx, dict(result.input_requests or {}))
            _legacy_round.set((answers, result.request_state))
        raise MCPError(code=types.INTERNAL_ERROR, message="too many input rounds")
    finally:
        _legacy_round.reset(token)


def _elicited_field(resp: Any, field: str) -> str | None:
    try:
        action, content = _elicit_content(resp)
    except TypeError:
        return None
    if action != "accept":
        return None
    value = content.get(field)
    return None if value is None else str(value)


async def _r_test_input_required_result_elicitation(ctx: Context) -> CallToolResult | InputRequiredResult:
    name = _elicited_field(_responses(ctx).get("user_name"), "name")
    if name is not None:
        return _text(f"Hello, {name}!")
    return InputRequiredResult(input_requests={"user_name": _elicit_req("What is your name?", NAME_SCHEMA)})


@app.tool(description="MRTR: asks for the user's name via an elicitation input request (SEP-2322)")
async def test_input_required_result_elicitation(ctx: Context) -> CallToolResult | InputRequiredResult:
    return await _mrtr(ctx, _r_test_input_required_result_elicitation)


async def _r_test_input_required_result_sampling(ctx: Context) -> CallToolResult | InputRequiredResult:
    resp = _responses(ctx).get("capital_question")
    if isinstance(resp, (types.CreateMessageResult, types.CreateMessageResultWithTools)):
        return _text(f"The model answered: {_sampling_text(resp)}")
    return InputRequiredResult(
        input_requests={"capital_question": _sampling_req("What is the capital of France?", 100)}
    )


@app.tool(description="MRTR: asks a sampling question (SEP-2322)")
async def test_input_required_result_sampling(ctx: Context) -> CallToolResult | InputRequiredResult:
    return await _mrtr(ctx, _r_test_input_required_result_sampling)


async def _r_test_input_required_result_list_roots(ctx: Context) -> CallToolResult | InputRequiredResult:
    resp = _responses(ctx).get("client_roots")
    if isinstance(resp, types.ListRootsResult):
        uris = ", ".join(str(r.uri) for r in resp.roots) or "(none)"
        return _text(f"Client roots: {uris}")
    return InputRequiredResult(input_requests={"client_roots": _roots_req()})


@app.tool(description="MRTR: asks for the client's roots (SEP-2322)")
async def test_input_required_result_list_roots(ctx: Context) -> CallToolResult | InputRequiredResult:
    return await _mrtr(ctx, _r_test_input_required_result_list_roots)


CONFIRM_SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}


async def _r_test_input_required_result_request_state(ctx: Context) -> CallToolResult | InputRequiredResult:
    resp = _responses(ctx).get("confirm")
    if resp is not None and _req_state(ctx) == "request-state-v1:confirm":
        try:
            action, content = _elicit_content(resp)
        except TypeError:
            action, content = "?", {}
        return _text(f"state-ok: confirmed action={action}, ok={content.get('ok')}")
    return InputRequiredResult(
        input_requests={"confirm": _elicit_req("Please confirm", CONFIRM_SCHEMA)},
        request_state="request-state-v1:confirm",
    )


@app.tool(description="MRTR: round-trips requestState (SEP-2322)")
async def test_input_required_result_request_state(ctx: Context) -> CallToolResult | InputRequiredResult:
    return await _mrtr(ctx, _r_test_input_required_result_request_state)


async def _r_test_input_required_result_multiple_inputs(ctx: Context) -> CallToolResult | InputRequiredResult:
    responses = _responses(ctx)
    wanted = ("user_name", "greeting", "client_roots")
    if all(k in responses for k in wanted) and _req_state(ctx) == "request-state-v1:multiple":
        name = _elicited_field(responses["user_name"], "name") or "unknown"
        greeting = _sampling_text(responses["greeting"])
        roots = responses["client_roots"]
        n_roots = len(roots.roots) if isinstance(roots, types.ListRootsResult) else 0
        return _text(f"All inputs received: name={name}, greeting={greeting}, roots={n_roots}")
    return InputRequiredResult(
        input_requests={
            "user_name": _elicit_req("What is your name?", NAME_SCHEMA),
            "greeting": _sampling_req("Generate a greeting", 50),
            "client_roots": _roots_req(),
        },
        request_state="request-state-v1:multiple",
    )


@app.tool(description="MRTR: elicitation, sampling and roots/list in one round (SEP-2322)")
async def test_input_required_result_multiple_inputs(ctx: Context) -> CallToolResult | InputRequiredResult:
    return await _mrtr(ctx, _r_test_input_required_result_multiple_inputs)


async def _r_test_input_required_result_multi_round(ctx: Context) -> CallToolResult | InputRequiredResult:
    responses = _responses(ctx)
    state = _req_state(ctx) or ""
    if state.startswith("multi-round:2:") and "step2" in responses:
        name = state.split(":", 2)[2]
        color = _elicited_field(responses["step2"], "color") or "unknown"
        return _text(f"Multi-round complete: name={name}, color={color}")
    if state == "multi-round:1" and "step1" in responses:
        name = _elicited_field(responses["step1"], "name") or "unknown"
        return InputRequiredResult(
            input_requests={
                "step2": _elicit_req(
                    "Step 2: What is your favorite color?",
                    {"type": "object", "properties": {"color": {"type": "string"}}, "required": ["color"]},
                )
            },
            request_state=f"multi-round:2:{name}",
        )
    return InputRequiredResult(
        input_requests={"step1": _elicit_req("Step 1: What is your name?", NAME_SCHEMA)},
        request_state="multi-round:1",
    )


@app.tool(description="MRTR: two rounds with evolving requestState (SEP-2322)")
async def test_input_required_result_multi_round(ctx: Context) -> CallToolResult | InputRequiredResult:
    return await _mrtr(ctx, _r_test_input_required_result_multi_round)


async def _r_test_input_required_result_tampered_state(ctx: Context) -> CallToolResult | InputRequiredResult:
    # The SDK's RequestStateBoundary seals requestState (AES-GCM) and answers a tampered
    # echo with -32602 before this handler runs.
    if _req_state(ctx) == "tamper-check:v1" and "confirm" in _responses(ctx):
        return _text("state-ok: requestState verified")
    return InputRequiredResult(
        input_requests={"confirm": _elicit_req("Please confirm", CONFIRM_SCHEMA)},
        request_state="tamper-check:v1",
    )


@app.tool(description="MRTR: integrity-protected requestState; tampering is rejected (SEP-2322)")
async def test_input_required_result_tampered_state(ctx: Context) -> CallToolResult | InputRequiredResult:
    return await _mrtr(ctx, _r_test_input_required_result_tampered_state)


async def _r_test_input_required_result_capabilities(ctx: Context) -> CallToolResult | InputRequiredResult:
    responses = _responses(ctx)
    if responses:
        return _text(f"Capabilities check complete: received {', '.join(sorted(responses))}")
    caps = _caps(ctx)
    requests: dict[str, Any] = {}
    if caps is not None and caps.sampling is not None:
        requests["sampling"] = _sampling_req("What is the capital of France?", 100)
    if caps is not None and caps.elicitation is not None:
        requests["elicitation"] = _elicit_req("What is your name?", NAME_SCHEMA)
    if caps is not None and caps.roots is not None:
        requests["roots"] = _roots_req()
    if not requests:
        return _text("No input requests: the client declared no sampling, elicitation or roots capability")
    return InputRequiredResult(input_requests=requests)


@app.tool(description="MRTR: only requests inputs for capabilities the client declared (SEP-2322)")
async def test_input_required_result_capabilities(ctx: Context) -> CallToolResult | InputRequiredResult:
    return await _mrtr(ctx, _r_test_input_required_result_capabilities)


async def _r_test_input_required_result_prompt(ctx: Context) -> Any:
    resp = _responses(ctx).get("user_context")
    context = _elicited_field(resp, "context")
    if context is not None:
        return [{"role": "user", "content": {"type": "text", "text": f"Prompt with context: {context}"}}]
    return InputRequiredResult(
        input_requests={
            "user_context": _elicit_req(
                "What context should the prompt use?",
                {"type": "object", "properties": {"context": {"type": "string"}}, "required": ["context"]},
            )
        }
    )


@app.prompt(description="MRTR: a prompt that needs elicitation input first (SEP-2322)")
async def test_input_required_result_prompt(ctx: Context) -> Any:
    return await _mrtr(ctx, _r_test_input_required_result_prompt)


# ----- 2026-07-28 server-stateless diagnostics (SEP-2575) ------------------------------------


@app.tool(description="Requires the client's sampling capability; rejects with -32021 when it is missing")
async def test_missing_capability(ctx: Context) -> CallToolResult | InputRequiredResult:
    caps = _caps(ctx)
    if caps is None or caps.sampling is None:
        raise MCPError(
            code=types.MISSING_REQUIRED_CLIENT_CAPABILITY,
            message="Client did not declare the required 'sampling' capability",
            data={"requiredCapabilities": {"sampling": {}}},
        )
    responses = _responses(ctx)
    if "sampling" in responses:
        return _text(f"Sampling answered: {_sampling_text(responses['sampling'])}")
    if not _modern(ctx):
        return _text("Client declares sampling")
    return InputRequiredResult(input_requests={"sampling": _sampling_req("Say hello", 20)})


@app.tool(description="Streams progress, then asks for input via MRTR (never a server-to-client request)")
async def test_streaming_elicitation(ctx: Context) -> CallToolResult | InputRequiredResult:
    responses = _responses(ctx)
    if "confirm" in responses:
        return _text("Streaming elicitation complete")
    await ctx.report_progress(0, 1, "waiting for input")
    if not _modern(ctx):
        return await _elicit_either_era(ctx, "Please confirm", CONFIRM_SCHEMA, "Streaming elicitation complete")
    return InputRequiredResult(input_requests={"confirm": _elicit_req("Please confirm", CONFIRM_SCHEMA)})


@app.tool(description="Emits log notifications (only delivered when the request opted into a log level)")
async def test_logging_tool(ctx: Context) -> CallToolResult:
    await _log(ctx, "info", "test_logging_tool: info message")
    await _log(ctx, "warning", "test_logging_tool: warning message")
    return _text("Logging tool executed")


def _dynamic_tool() -> CallToolResult:
    return _text("dynamic tool")


async def _dynamic_prompt() -> str:
    return "dynamic prompt"


async def _announce(ctx: Context, kind: str) -> None:
    if kind == "tools":
        await ctx.notify_tools_changed()  # 2026-07-28: subscriptions/listen streams
    else:
        await ctx.notify_prompts_changed()
    if not _modern(ctx):  # legacy: notifications/*/list_changed on the standalone GET stream
        try:
            await (ctx.session.send_tool_list_changed() if kind == "tools" else ctx.session.send_prompt_list_changed())
        except Exception:  # noqa: BLE001 - no standalone stream open
            pass


_KEEP = Annotated[bool, Field(description="Toggle the dynamic entry persistently instead of add-then-remove")]


@app.tool(
    description=(
        "Changes the tool list and announces tools/list_changed. By default test_dynamic_tool is added and "
        "removed again (the list is the same afterwards, so concurrent runs see a stable list); keep=true "
        "toggles it persistently."
    )
)
async def test_trigger_tool_change(ctx: Context, keep: _KEEP = False) -> CallToolResult:
    present = "test_dynamic_tool" in {t.name for t in await app.list_tools()}
    if present:
        app.remove_tool("test_dynamic_tool")
    else:
        app.add_tool(_dynamic_tool, name="test_dynamic_tool", description="Tool added by test_trigger_tool_change")
        if not keep:
            app.remove_tool("test_dynamic_tool")
    await _announce(ctx, "tools")
    now = "test_dynamic_tool" in {t.name for t in await app.list_tools()}
    return _text(f"Tool list changed (test_dynamic_tool present: {now})")


@app.tool(
    description=(
        "Changes the prompt list and announces prompts/list_changed (add-then-remove of test_dynamic_prompt "
        "by default; keep=true toggles it persistently)."
    )
)
async def test_trigger_prompt_change(ctx: Context, keep: _KEEP = False) -> CallToolResult:
    from mcp.server.mcpserver.prompts import Prompt

    present = "test_dynamic_prompt" in {p.name for p in await app.list_prompts()}
    if present:
        app.remove_prompt("test_dynamic_prompt")
    else:
        app.add_prompt(
            Prompt.from_function(
                _dynamic_prompt, name="test_dynamic_prompt", description="Prompt added by test_trigger_prompt_change"
            )
        )
        if not keep:
            app.remove_prompt("test_dynamic_prompt")
    await _announce(ctx, "prompts")
    now = "test_dynamic_prompt" in {p.name for p in await app.list_prompts()}
    return _text(f"Prompt list changed (test_dynamic_prompt present: {now})")


@app.tool(description="Echoes a parameter that clients mirror into the Mcp-Param-Region header (SEP-2243)")
def test_custom_headers(
    region: Annotated[str, Field(description="Region, mirrored as Mcp-Param-Region", json_schema_extra={"x-mcp-header": "Region"})],
    query: Annotated[str | None, Field(description="Free-form query (not mirrored)")] = None,
) -> CallToolResult:
    return _text(f"region={region}" + (f", query={query}" if query is not None else ""))



# ----- tasks extension fixtures (SEP-2663); the task path is in TasksExtension ----------------


@app.tool(description="Sync-only greeting: returns 'Hello, {name}!'")
def greet(name: str) -> CallToolResult:
    return _text(f"Hello, {name}!")


@app.tool(description="Task-supporting (optional): sleeps `seconds` seconds, then returns a result")
async def slow_compute(seconds: float = 0, label: str = "") -> CallToolResult:
    await asyncio.sleep(min(max(0.0, float(seconds)), 5.0))  # sync fallback is capped
    return _text(f"Computed {label} after {seconds}s")


@app.tool(description="Task-supporting (required): always reports a tool execution error after ~1s")
async def failing_job() -> CallToolResult:
    await asyncio.sleep(1.0)
    return CallToolResult(content=[TextContent(type="text", text="failing_job: the job reported an error")], is_error=True)


@app.tool(description="Task-supporting (optional): fails with a protocol-level error")
async def protocol_error_job() -> CallToolResult:
    raise MCPError(code=types.INTERNAL_ERROR, message="protocol_error_job: internal failure")


@app.tool(description="Task-supporting (optional): asks for confirmation (elicitation), then 'deletes' the file")
async def confirm_delete(ctx: Context, filename: str = "file") -> CallToolResult | InputRequiredResult:
    return await _elicit_either_era(ctx, f"Delete {filename}?", CONFIRM_DELETE_SCHEMA, f"confirm_delete {filename}")


@app.tool(description="Task-supporting (optional): asks for two inputs at once")
async def multi_input(ctx: Context) -> CallToolResult | InputRequiredResult:
    responses = _responses(ctx)
    if "first" in responses and "second" in responses:
        return _text("multi_input complete")
    schema = {"type": "object", "properties": {"name": {"type": "string"}}}
    return InputRequiredResult(
        input_requests={"first": _elicit_req("First input", schema), "second": _elicit_req("Second input", schema)}
    )


@app.tool(description="Task support required: MRTR for user_name, then completes as a task (SEP-2663)")
async def test_tool_with_task(ctx: Context) -> CallToolResult | InputRequiredResult:
    # Reached only on the legacy era (the modern era is handled by TasksExtension).
    return await _elicit_either_era(ctx, "What is your name?", NAME_SCHEMA, "test_tool_with_task")


# ---------------------------------------------------------------------------------------------
# Resources
# ---------------------------------------------------------------------------------------------


@app.resource(
    "test://static-text",
    name="static-text",
    description="A static text resource for testing",
    mime_type="text/plain",
)
def static_text() -> str:
    return "This is the content of the static text resource."


@app.resource(
    "test://static-binary",
    name="static-binary",
    description="A static binary resource (PNG image) for testing",
    mime_type="image/png",
)
def static_binary() -> bytes:
    return base64.b64decode(PNG_B64)


@app.resource(
    "test://watched-resource",
    name="watched-resource",
    description="A resource that can be subscribed to",
    mime_type="text/plain",
)
def watched_resource() -> str:
    return "Watched resource content"


@app.resource(
    "test://template/{id}/data",
    name="template-data",
    description="A resource template with parameter substitution",
    mime_type="application/json",
)
def template_data(id: str) -> str:  # noqa: A002 - template variable name
    return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"}, separators=(",", ":"))


async def _subscribe(ctx: Any, params: types.SubscribeRequestParams) -> types.EmptyResult:
    _state["subscriptions"].setdefault(_session_key(ctx), set()).add(str(params.uri))
    return types.EmptyResult()


async def _unsubscribe(ctx: Any, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
    _state["subscriptions"].get(_session_key(ctx), set()).discard(str(params.uri))
    return types.EmptyResult()


async def _set_level(ctx: Any, params: types.SetLevelRequestParams) -> types.EmptyResult:
    _state["log_levels"][_session_key(ctx)] = params.level
    return types.EmptyResult()


_low.add_request_handler("resources/subscribe", types.SubscribeRequestParams, _subscribe)
_low.add_request_handler("resources/unsubscribe", types.UnsubscribeRequestParams, _unsubscribe)
_low.add_request_handler("logging/setLevel", types.SetLevelRequestParams, _set_level)


@app.tool(description="Sends notifications/resources/updated for each URI on this request's stream")
async def test_resource_updated(ctx: Context, uris: list[str]) -> CallToolResult:
    for uri in uris:
        await ctx.session.send_notification(
            types.ResourceUpdatedNotification(params=types.ResourceUpdatedNotificationParams(uri=uri)),
            related_request_id=ctx.request_context.request_id,
        )
    return _text(f"Sent {len(uris)} resource update(s)")


_DETACHED = {
    "roots": (_roots_req, types.ListRootsResult),
    "elicitation": (
        lambda: _elicit_req("Detached question", {"type": "object", "properties": {}}),
        types.ElicitResult,
    ),
    "sampling": (lambda: _sampling_req("Detached question", 10), types.CreateMessageResult),
}


@app.tool(description="Sends roots/list, elicitation/create or sampling/createMessage tied to no request (GET stream)")
async def test_detached_request(ctx: Context, kind: str) -> CallToolResult:
    make, result_type = _DETACHED[kind]
    try:
        result = await ctx.session.send_request(make(), result_type, request_read_timeout_seconds=10)
    except MCPError as exc:
        return _text(f"{kind} refused by the client: {exc.error.code} {exc.error.message}")
    except Exception as exc:  # noqa: BLE001 - a timeout or no back channel, reported to the test
        return _text(f"{kind} not answered: {type(exc).__name__}: {exc}")
    return _text(f"{kind} answered: {json.dumps(_dump(result), separators=(',', ':'))}")


def _paged(key: str, listing: Callable[[], Awaitable[list[Any]]], result: Callable[..., Any], size: int):
    async def handler(ctx: Any, params: types.PaginatedRequestParams) -> Any:
        items = await listing()
        start = int(params.cursor) if params.cursor else 0
        end = start + size
        return result(**{key: items[start:end]}, next_cursor=str(end) if end < len(items) else None)

    return handler


def _page_lists(size: int) -> None:
    pages = [
        ("resources/list", "resources", app.list_resources, types.ListResourcesResult),
        ("resources/templates/list", "resource_templates", app.list_resource_templates, types.ListResourceTemplatesResult),
        ("prompts/list", "prompts", app.list_prompts, types.ListPromptsResult),
    ]
    for method, key, listing, result in pages:
        _low.add_request_handler(method, types.PaginatedRequestParams, _paged(key, listing, result, size))


if int(os.environ.get("FIXTURE_PAGE_SIZE") or 0) > 0:
    _page_lists(int(os.environ["FIXTURE_PAGE_SIZE"]))


# ---------------------------------------------------------------------------------------------
# Prompts and completion
# ---------------------------------------------------------------------------------------------


@app.prompt(description="A simple prompt without arguments")
def test_simple_prompt() -> Any:
    return [{"role": "user", "content": {"type": "text", "text": "This is a simple prompt for testing."}}]


@app.prompt(description="A prompt with required arguments")
def test_prompt_with_arguments(
    arg1: Annotated[str, Field(description="First test argument")],
    arg2: Annotated[str, Field(description="Second test argument")],
) -> Any:
    return [{"role": "user", "content": {"type": "text", "text": f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"}}]


@app.prompt(description="A prompt that includes an embedded resource")
def test_prompt_with_embedded_resource(
    resourceUri: Annotated[str, Field(description="URI of the resource to embed")],  # noqa: N803 - wire name
) -> Any:
    return [
        {
            "role": "user",
            "content": {
                "type": "resource",
                "resource": {
                    "uri": resourceUri,
                    "mimeType": "text/plain",
                    "text": "Embedded resource content for testing.",
                },
            },
        },
        {"role": "user", "content": {"type": "text", "text": "Please process the embedded resource above."}},
    ]


@app.prompt(description="A prompt that includes image content")
def test_prompt_with_image() -> Any:
    return [
        {"role": "user", "content": {"type": "image", "data": PNG_B64, "mimeType": "image/png"}},
        {"role": "user", "content": {"type": "text", "text": "Please analyze the image above."}},
    ]


COMPLETIONS = {"arg1": ["paris", "park", "party"], "arg2": ["world", "work", "word"]}


@app.completion()
async def complete(ref: Any, argument: Any, context: Any) -> Completion:
    values = COMPLETIONS.get(argument.name, [])
    prefix = argument.value or ""
    matches = [v for v in values if v.startswith(prefix)]
    return Completion(values=matches, total=len(matches), has_more=False)


# ---------------------------------------------------------------------------------------------
# Runner
# ---------------------------------------------------------------------------------------------


def build_asgi() -> Any:
    starlette_app = app.streamable_http_app(
        streamable_http_path=MCP_PATH,
        event_store=InMemoryEventStore(),
        retry_interval=1000,
        # Host/Origin are validated by HostOriginGuard below, not by the SDK.
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        host="127.0.0.1",
    )
    extra = os.environ.get("FIXTURE_ALLOWED_HOSTS", "").split(",")
    return HostOriginGuard(starlette_app, extra)


async def serve(port: int) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    sock.set_inheritable(True)
    actual = sock.getsockname()[1]
    level = os.environ.get("FIXTURE_LOG_LEVEL", "WARNING").lower()
    config = uvicorn.Config(build_asgi(), log_level=level, lifespan="on", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)

    async def announce() -> None:
        while not server.started:
            if server.should_exit:
                return
            await asyncio.sleep(0.02)
        print(f"READY http://127.0.0.1:{actual}{MCP_PATH}", flush=True)

    task = asyncio.create_task(announce())
    try:
        await server.serve(sockets=[sock])
    finally:
        task.cancel()


def main() -> int:
    raw = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PORT", "0")
    try:
        port = int(raw)
    except ValueError:
        print(f"usage: {sys.argv[0]} [PORT]", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(port))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
