"""An MCP server that verifies who calls: the upstream of mcp-warden's upstream-auth tests and
demo (issue 22).

Written with the Python `mcp` 2.3.0 SDK (`MCPServer`, streamable HTTP on `/mcp`) and PyJWT
2.x (`PyJWKClient`), as a team's own server would be. In front of the SDK app, an ASGI
middleware checks every request:

* the identity JWT in `IDENTITY_HEADER` (default `X-Mcp-Warden-Identity`, bare or `Bearer `),
  verified against the JWKS at `JWKS_URL` (the sidecar's admin `/.well-known/jwks.json`, or the
  operator's; or the URL in the file `JWKS_URL_FILE`, read at the first request, for tests that
  start this server before the sidecar), with `aud` = `AUDIENCE` and `iss` = `ISSUER`, ES256 or EdDSA, `exp` required;
  an invalid or missing one is answered 401 and the request never reaches the SDK;
* the credential in `CREDENTIAL_HEADER` (optional), compared with nothing: it is recorded, so
  the test can see which value arrived.

Each request appends one JSON line to `RECORD` (if set):
`{"method": "POST", "identity": {claims} | null, "kid": "...", "error": "..." | null,
  "credential": "..." | null, "authorization": "..." | null}`.

The tool `whoami` answers the verified claims of its own request (JSON text).

Usage: python identity_upstream.py [PORT]   (0: a free port; binds 127.0.0.1 only)
Prints `READY http://127.0.0.1:<port>/mcp` once it accepts connections.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from contextvars import ContextVar
from typing import Any

import jwt
import uvicorn
from mcp.server import MCPServer
from mcp.server.transport_security import TransportSecuritySettings

IDENTITY_HEADER = os.environ.get("IDENTITY_HEADER", "X-Mcp-Warden-Identity").lower().encode()
CREDENTIAL_HEADER = os.environ.get("CREDENTIAL_HEADER", "").lower().encode()
JWKS_URL = os.environ.get("JWKS_URL", "")
JWKS_URL_FILE = os.environ.get("JWKS_URL_FILE", "")
AUDIENCE = os.environ.get("AUDIENCE", "")  # AUDIENCE_FROM_URL=1: its own READY URL
ISSUER = os.environ.get("ISSUER", "")
RECORD = os.environ.get("RECORD", "")

claims_of_request: ContextVar[dict[str, Any] | None] = ContextVar("claims", default=None)
# PyJWKClient's defaults (JWKS cached 300 s, unknown kids refetched at most every 30 s) unless
# JWKS_LIFESPAN says otherwise: the sidecar publishes a rotated key ahead of using it.
LIFESPAN = float(os.environ.get("JWKS_LIFESPAN", "300"))
_jwks: jwt.PyJWKClient | None = None


def jwks() -> jwt.PyJWKClient | None:
    global _jwks
    if _jwks is None:
        url = JWKS_URL
        if not url and JWKS_URL_FILE and os.path.exists(JWKS_URL_FILE):
            with open(JWKS_URL_FILE, encoding="utf-8") as f:
                url = f.read().strip()
        if url:
            _jwks = jwt.PyJWKClient(url, cache_keys=False, lifespan=LIFESPAN)
    return _jwks

app = MCPServer("identity-upstream")


@app.tool()
def whoami() -> str:
    """Who the sidecar says is calling (the verified identity JWT's claims)."""
    return json.dumps(claims_of_request.get(), sort_keys=True)


@app.tool()
def echo(message: str) -> str:
    """Echoes the message."""
    return f"Echo: {message}"


def verify(token: str) -> dict[str, Any]:
    client = jwks()
    if client is None:
        raise jwt.InvalidTokenError("no JWKS_URL configured")
    if token.lower().startswith("bearer "):
        token = token[7:]
    key = client.get_signing_key_from_jwt(token)
    return jwt.decode(
        token,
        key=key.key,
        algorithms=["ES256", "EdDSA"],
        audience=AUDIENCE,
        issuer=ISSUER,
        options={"require": ["exp", "iat", "sub", "iss", "aud", "jti"]},
        leeway=5,
    )


def record(line: dict[str, Any]) -> None:
    if RECORD:
        with open(RECORD, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")


class VerifyIdentity:
    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        headers = {k.lower(): v.decode("latin-1") for k, v in scope["headers"]}
        token = headers.get(IDENTITY_HEADER)
        claims, error, kid = None, None, None
        if token is None:
            error = "no identity header"
        else:
            try:
                kid = jwt.get_unverified_header(token.removeprefix("Bearer ")).get("kid")
                claims = verify(token)
            except Exception as e:  # any failure is a refusal
                error = f"{type(e).__name__}: {e}"
        record(
            {
                "method": scope["method"],
                "identity": claims,
                "kid": kid,
                "error": error,
                "credential": headers.get(CREDENTIAL_HEADER) if CREDENTIAL_HEADER else None,
                "authorization": headers.get(b"authorization"),
            }
        )
        if claims is None:
            body = json.dumps({"error": "invalid_identity", "detail": error}).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        token_var = claims_of_request.set(claims)
        try:
            await self.inner(scope, receive, send)
        finally:
            claims_of_request.reset(token_var)


def build_asgi() -> Any:
    inner = app.streamable_http_app(
        streamable_http_path="/mcp",
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        host="127.0.0.1",
        stateless_http=True,
        json_response=True,
    )
    return VerifyIdentity(inner)


async def serve(port: int) -> None:
    global AUDIENCE
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    actual = sock.getsockname()[1]
    if os.environ.get("AUDIENCE_FROM_URL"):
        AUDIENCE = f"http://127.0.0.1:{actual}/mcp"
    config = uvicorn.Config(build_asgi(), log_level="warning", lifespan="on", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)

    async def announce() -> None:
        while not server.started:
            if server.should_exit:
                return
            await asyncio.sleep(0.02)
        print(f"READY http://127.0.0.1:{actual}/mcp", flush=True)

    task = asyncio.create_task(announce())
    try:
        await server.serve(sockets=[sock])
    finally:
        task.cancel()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
