// Minimal real OAuth 2.1 / OIDC authorization server for e2e tests (npm oidc-provider, panva).
// Env: OP_PORT (0 = ephemeral), OP_KEYS (private JWKS file, first key signs),
//      OP_RESOURCE (RFC 8707 resource indicator == JWT aud; tokens are RFC 9068 JWTs),
//      OP_OPAQUE_RESOURCE (second resource whose tokens are OPAQUE -> RFC 7662 introspection
//      and RFC 7009 revocation work for those; oidc-provider refuses both for JWT tokens),
//      OP_TTL (access token lifetime, seconds).
// Prints "READY <issuer>" on stdout once listening on 127.0.0.1, then one line per token request
// as the provider saw it (its grant.success / grant.error events):
//   TOKEN {"client_id":"agent-beta","grant_type":"client_credentials","scope":"mcp:tools.list",
//          "resource":"http://…/mcp","ok":true,"granted":"mcp:tools.list"}
//   TOKEN {…,"ok":false,"error":"invalid_scope","error_description":"requested scope is not allowed"}
// SIGHUP: re-read OP_KEYS and swap the Provider in place (key rotation without restart;
//         one shared in-memory adapter, so issued opaque tokens stay introspectable).
import http from 'node:http';
import fs from 'node:fs';
import Provider, { errors } from 'oidc-provider';
// v9 gives every Provider instance its own in-memory store; share one so a SIGHUP
// key-rotation swap keeps opaque tokens introspectable/revocable.
import { createMemoryAdapter } from 'oidc-provider/lib/adapters/memory_adapter.js';

const adapter = createMemoryAdapter(0);

const RESOURCE = process.env.OP_RESOURCE || 'http://127.0.0.1:8080/mcp';
const OPAQUE_RESOURCE = process.env.OP_OPAQUE_RESOURCE || 'http://127.0.0.1:8080/mcp-opaque';
const TTL = Number(process.env.OP_TTL || 300);
const SCOPES = ['mcp:tools.list', 'mcp:tools.call', 'mcp:admin'];

const clients = [
  { client_id: 'agent-alpha', client_secret: 'alpha-secret', scope: 'mcp:tools.list mcp:tools.call' },
  { client_id: 'agent-beta', client_secret: 'beta-secret', scope: 'mcp:tools.list' },
  // mcp-warden addition: the demo's suspended and expired agents still get valid tokens from the
  // IdP; it is the sidecar that refuses them.
  { client_id: 'agent-gamma', client_secret: 'gamma-secret', scope: 'mcp:tools.list mcp:tools.call' },
  { client_id: 'agent-delta', client_secret: 'delta-secret', scope: 'mcp:tools.list mcp:tools.call' },
  // the sidecar itself, as an introspection caller (RFC 7662 needs an authenticated client)
  { client_id: 'mcp-sidecar', client_secret: 'sidecar-secret', scope: 'mcp:admin' },
].map((c) => ({ ...c, grant_types: ['client_credentials'], redirect_uris: [], response_types: [],
  token_endpoint_auth_method: 'client_secret_basic' }));

function build(issuer) {
  const p = new Provider(issuer, {
    adapter,
    clients,
    scopes: SCOPES,
    jwks: JSON.parse(fs.readFileSync(process.env.OP_KEYS, 'utf8')),
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async (_ctx, _client, oneOf) => oneOf ?? RESOURCE,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx, resource) => {
          if (resource === RESOURCE) {
            return { scope: SCOPES.join(' '), audience: RESOURCE, accessTokenTTL: TTL,
              accessTokenFormat: 'jwt', jwt: { sign: { alg: 'RS256' } } };
          }
          if (resource === OPAQUE_RESOURCE) {
            return { scope: SCOPES.join(' '), audience: OPAQUE_RESOURCE, accessTokenTTL: TTL,
              accessTokenFormat: 'opaque' };
          }
          throw new errors.InvalidTarget();
        },
      },
    },
  });
  p.proxy = false;
  p.on('grant.success', (ctx) => logToken(ctx, null));
  p.on('grant.error', (ctx, error) => logToken(ctx, error));
  return p;
}

// What the client asked for, and the answer (tests/tests/oauth_handshake.rs reads these lines).
function logToken(ctx, error) {
  const params = ctx.oidc?.params ?? {};
  const token = ctx.oidc?.entities?.ClientCredentials ?? ctx.oidc?.entities?.AccessToken;
  console.log(`TOKEN ${JSON.stringify({
    client_id: ctx.oidc?.client?.clientId ?? null,
    grant_type: params.grant_type ?? null,
    scope: params.scope ?? null,
    resource: params.resource ?? null,
    ok: !error,
    ...(error
      ? { error: error.error ?? String(error), error_description: error.error_description ?? null }
      : { granted: token?.scope ?? null }),
  })}`);
}

const server = http.createServer((req, res) => current.callback()(req, res));
let current;
server.listen(Number(process.env.OP_PORT || 0), '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  current = build(issuer);
  process.on('SIGHUP', () => {
    try { current = build(issuer); console.log('RELOADED'); } catch (e) { console.error('reload failed', e); }
  });
  console.log(`READY ${issuer}`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
