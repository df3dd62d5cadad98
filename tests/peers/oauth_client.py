"""OAuth handshake probe with the Python SDK (`mcp` 2.3.0) client-credentials provider.

Given only a client id, its secret and the MCP URL, the SDK's `ClientCredentialsOAuthProvider`
(mcp/client/auth/extensions/client_credentials.py) discovers everything itself: the 401's
WWW-Authenticate, the Protected Resource Metadata (RFC 9728), the authorization server metadata,
and the scope to ask for (mcp/client/auth/utils.py `get_client_metadata_scopes`: the 401's
`scope`, else PRM `scopes_supported`, else the AS's). A 403 `insufficient_scope` makes it ask
again for the union of what it asked before and what the challenge names (SEP-2350,
mcp/client/auth/oauth2.py `_auth_flow`).

    python oauth_client.py --client-id ID --client-secret SECRET [options] URL

Steps, on one session:
    1. connect (the first request is answered 401; the SDK authorizes and retries) and list tools
    2. call the base tool (needs only the 401's scope)
    3. call the step-up tool (needs a scope the first token lacks: 403 insufficient_scope)
    4. call the base tool again (after a refused step-up: is the session still usable?)
    5. if step 3 or 4 failed, the base tool once more on a fresh session (a new provider)
Every token request the SDK sends is recorded from the wire (httpx2 event hooks), with the
scope it asked for and the IdP's answer.

Prints one JSON document on stdout:
    {"connected": bool, "tools": [...], "steps": [{"step": "base", "ok": bool, "error": ...}, ...],
     "token_requests": [{"scope": "...", "status": 200, "granted": "...", "error": "..."}, ...],
     "challenges": [{"status": 401, "www_authenticate": "..."}, ...], "prm": {...},
     "trace": ["<s> METHOD /path bearer|- ...", "<s> METHOD /path bearer|- -> status", ...]}
OAUTH_CLIENT_TRACEBACKS=1 prints the tracebacks of failures on stderr.
Exit status: 0 when the script ran to its end (whatever the outcomes), 2 on a usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import traceback
import warnings
from typing import Any
from urllib.parse import parse_qs

import httpx2
from mcp import Client
from mcp.client.auth import TokenStorage
from mcp.client.auth.extensions.client_credentials import ClientCredentialsOAuthProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken


class MemoryStorage(TokenStorage):
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


class Wire:
    """httpx2 response hook: the token requests, the challenges and the PRM, as sent and answered."""

    def __init__(self, mcp_url: str) -> None:
        self.mcp_url = mcp_url
        self.token_requests: list[dict[str, Any]] = []
        self.challenges: list[dict[str, Any]] = []
        self.prm: Any = None
        self.trace: list[str] = []
        self.t0 = time.monotonic()

    async def on_request(self, request: httpx2.Request) -> None:
        auth = "bearer" if "authorization" in request.headers else "-"
        self.trace.append(f"{time.monotonic() - self.t0:.3f} {request.method} {request.url.path} {auth} ...")

    async def on_response(self, response: httpx2.Response) -> None:
        req = response.request
        url = str(req.url)
        auth = "bearer" if "authorization" in req.headers else "-"
        self.trace.append(f"{time.monotonic() - self.t0:.3f} {req.method} {req.url.path} {auth} -> {response.status_code}")
        if req.method == "POST" and url.rstrip("/").endswith("/token"):
            form = parse_qs((req.content or b"").decode())
            entry: dict[str, Any] = {
                "scope": form.get("scope", [None])[0],
                "resource": form.get("resource", [None])[0],
                "status": response.status_code,
            }
            await response.aread()
            try:
                body = json.loads(response.content or b"null")
            except ValueError:
                body = {"raw": response.text[:300]}
            if response.status_code == 200 and isinstance(body, dict):
                entry["granted"] = body.get("scope")
            elif isinstance(body, dict):
                entry["error"] = body.get("error")
                entry["error_description"] = body.get("error_description")
            self.token_requests.append(entry)
        elif "/.well-known/oauth-protected-resource" in url and response.status_code == 200:
            await response.aread()
            try:
                self.prm = json.loads(response.content)
            except ValueError:
                self.prm = response.text[:300]
        elif url == self.mcp_url and response.status_code in (401, 403):
            self.challenges.append(
                {
                    "status": response.status_code,
                    "had_token": "authorization" in req.headers,
                    "www_authenticate": response.headers.get("www-authenticate"),
                }
            )


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


def _describe(exc: BaseException) -> dict[str, Any]:
    leaves = _leaves(exc)
    if os.environ.get("OAUTH_CLIENT_TRACEBACKS"):
        traceback.print_exception(exc)
    return {
        "exception": [f"{type(e).__module__}.{type(e).__name__}" for e in leaves],
        "message": " | ".join(str(e)[:400] for e in leaves),
        "code": next((e.code for e in leaves if isinstance(getattr(e, "code", None), int)), None),
    }


def _result(result: Any) -> dict[str, Any]:
    dumped = result.model_dump(by_alias=True, mode="json", exclude_none=True)
    text = " ".join(c.get("text", f"<{c.get('type')}>") for c in dumped.get("content", []))
    return {"is_error": bool(dumped.get("isError")), "text": text[:300]}


def _provider(args: argparse.Namespace) -> ClientCredentialsOAuthProvider:
    # Only the client id, the secret and the MCP URL: no scope, no issuer (the SDK warns that
    # omitting the issuer is deprecated; discovery then follows the PRM's authorization server).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ClientCredentialsOAuthProvider(
            server_url=args.url,
            storage=MemoryStorage(),
            client_id=args.client_id,
            client_secret=args.client_secret,
        )


async def _call(client: Client, name: str, arguments: dict[str, Any], timeout: float) -> dict[str, Any]:
    try:
        result = await asyncio.wait_for(client.call_tool(name, arguments), timeout)
    except BaseException as exc:  # noqa: BLE001 - every failure is reported
        if isinstance(exc, (KeyboardInterrupt, asyncio.CancelledError)):
            raise
        return {"tool": name, "ok": False, "error": _describe(exc)}
    out = _result(result)
    return {"tool": name, "ok": not out["is_error"], "result": out}


async def _session(args: argparse.Namespace, wire: Wire, work) -> dict[str, Any]:
    """Runs `work(client)` on a fresh provider + session; reports connect failures too."""
    async with httpx2.AsyncClient(
        auth=_provider(args),
        timeout=httpx2.Timeout(20.0, read=30.0),
        event_hooks={"request": [wire.on_request], "response": [wire.on_response]},
    ) as http:
        try:
            mode = {"mode": args.mode} if args.mode else {}  # default: the SDK's own (auto)
            async with Client(streamable_http_client(args.url, http_client=http), cache=None, **mode) as client:
                return await work(client)
        except BaseException as exc:  # noqa: BLE001
            if isinstance(exc, (KeyboardInterrupt, asyncio.CancelledError)):
                raise
            return {"session_error": _describe(exc)}


async def run(args: argparse.Namespace, out: dict[str, Any], wire: Wire) -> None:
    base_args = json.loads(args.base_args)
    step_args = json.loads(args.step_up_args)
    steps: list[dict[str, Any]] = out["steps"]

    # The step in progress: a failure inside the SDK's auth flow (a refused token request)
    # ends the whole session, so it surfaces from `async with Client(...)`, not from the call.
    plan = [("base", args.base_tool, base_args), ("step_up", args.step_up_tool, step_args), ("base_again", args.base_tool, base_args)]
    current: dict[str, Any] = {"step": "connect", "tool": None}

    async def main_session(client: Client) -> dict[str, Any]:
        out["connected"] = True
        current.update(step="list", tool=None)
        tools = await asyncio.wait_for(client.list_tools(), args.step_timeout)
        out["tools"] = sorted(t.name for t in tools.tools)
        for step, tool, arguments in plan:
            current.update(step=step, tool=tool)
            steps.append({"step": step, **await _call(client, tool, arguments, args.step_timeout)})
        current.update(step="close", tool=None)
        return {}

    failure = await _session(args, wire, main_session)
    if "session_error" in failure:
        out["session_error"] = {**current, **failure["session_error"]}
        if current["tool"] is not None and not any(s["step"] == current["step"] for s in steps):
            steps.append({"step": current["step"], "tool": current["tool"], "ok": False, "session_ended": True, "error": failure["session_error"]})
    if not all(s.get("ok") for s in steps) or "session_error" in failure:

        async def fresh(client: Client) -> dict[str, Any]:
            steps.append({"step": "base_fresh_session", **await _call(client, args.base_tool, base_args, args.step_timeout)})
            return {}

        failure = await _session(args, wire, fresh)
        if "session_error" in failure:
            steps.append({"step": "base_fresh_session", "ok": False, "error": failure["session_error"]})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--client-secret", required=True)
    parser.add_argument("--mode", default=None, help="SDK connect mode (legacy | auto | 2026-07-28); default: the SDK's")
    parser.add_argument("--base-tool", default="echo")
    parser.add_argument("--base-args", default='{"message": "hello"}')
    parser.add_argument("--step-up-tool", default="get-tiny-image")
    parser.add_argument("--step-up-args", default="{}")
    parser.add_argument("--step-timeout", type=float, default=30.0, help="deadline of each call, seconds")
    parser.add_argument("--timeout", type=float, default=90.0, help="overall deadline, seconds")
    parser.add_argument("url")
    args = parser.parse_args()

    wire = Wire(args.url)
    out: dict[str, Any] = {"sdk": "python mcp 2.3.0", "client_id": args.client_id, "connected": False, "steps": []}
    try:
        asyncio.run(asyncio.wait_for(run(args, out, wire), args.timeout))
    except BaseException as exc:  # noqa: BLE001 - reported as JSON
        if isinstance(exc, KeyboardInterrupt):
            raise
        out["fatal"] = _describe(exc)
    out["token_requests"] = wire.token_requests
    out["challenges"] = wire.challenges
    out["prm"] = wire.prm
    out["trace"] = wire.trace
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
