// Minimal real OAuth 2.1 / OIDC authorization server for e2e tests (npm oidc-provider, panva).
// Env: OP_PORT (0 = ephemeral), OP_KEYS (private JWKS file, first key signs),
//      OP_RESOURCE (RFC 8707 resource indicator == JWT aud; tokens are RFC 9068 JWTs),
//      OP_OPAQUE_RESOURCE (second resource whose tokens are OPAQUE -> RFC 7662 introspection
//      and RFC 7009 revocation work for those; oidc-provider refuses both for JWT tokens),
//      OP_TTL (access token lifetime, seconds),
//      OP_EXCHANGE_AUDIENCES (comma-separated: enables RFC 8693 token exchange for the client
//      mcp-sidecar, issuing JWTs for these audiences only), OP_EXCHANGE_TTL (their lifetime,
//      seconds, default 300), OP_EXCHANGE_DENY (client ids whose tokens may not be exchanged).
// Prints "READY <issuer>" on stdout once listening on 127.0.0.1, then one line per token request
// as the provider saw it (its grant.success / grant.error events):
//   TOKEN {"client_id":"agent-beta","grant_type":"client_credentials","scope":"mcp:tools.list",
//          "resource":"http://…/mcp","ok":true,"granted":"mcp:tools.list"}
//   TOKEN {…,"ok":false,"error":"invalid_scope","error_description":"requested scope is not allowed"}
// and one line per token exchange it granted (never a token):
//   EXCHANGE {"client_id":"mcp-sidecar","subject":"agent-alpha","audience":"https://api…","ttl":300}
// SIGHUP: re-read OP_KEYS and swap the Provider in place (key rotation without restart;
//         one shared in-memory adapter, so issued opaque tokens stay introspectable).
import http from 'node:http';
import fs from 'node:fs';
import crypto from 'node:crypto';
import Provider, { errors } from 'oidc-provider';
import * as jose from 'jose';
// v9 gives every Provider instance its own in-memory store; share one so a SIGHUP
// key-rotation swap keeps opaque tokens introspectable/revocable.
import { createMemoryAdapter } from 'oidc-provider/lib/adapters/memory_adapter.js';

const adapter = createMemoryAdapter(0);

const RESOURCE = process.env.OP_RESOURCE || 'http://127.0.0.1:8080/mcp';
const OPAQUE_RESOURCE = process.env.OP_OPAQUE_RESOURCE || 'http://127.0.0.1:8080/mcp-opaque';
const TTL = Number(process.env.OP_TTL || 300);
const SCOPES = ['mcp:tools.list', 'mcp:tools.call', 'mcp:admin'];
const list = (v) => (v || '').split(',').map((s) => s.trim()).filter(Boolean);
const EXCHANGE_AUDIENCES = list(process.env.OP_EXCHANGE_AUDIENCES);
const EXCHANGE_TTL = Number(process.env.OP_EXCHANGE_TTL || 300);
const EXCHANGE_DENY = list(process.env.OP_EXCHANGE_DENY);
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

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
if (EXCHANGE_AUDIENCES.length) {
  clients.find((c) => c.client_id === 'mcp-sidecar').grant_types.push(TOKEN_EXCHANGE);
}

function build(issuer) {
  const jwks = JSON.parse(fs.readFileSync(process.env.OP_KEYS, 'utf8'));
  const p = new Provider(issuer, {
    adapter,
    clients,
    scopes: SCOPES,
    jwks,
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
  if (EXCHANGE_AUDIENCES.length) {
    p.registerGrantType(TOKEN_EXCHANGE, tokenExchange(issuer, jwks),
      ['subject_token', 'subject_token_type', 'requested_token_type', 'audience', 'scope']);
  }
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

// RFC 8693 token exchange (oidc-provider has no built-in handler; it authenticates the client,
// checks that the client may use the grant and answers errors as RFC 6749 §5.2 says):
// the subject_token must be an access token this provider signed (its JWKS, its issuer); the
// issued token is a JWT for one of OP_EXCHANGE_AUDIENCES, its `sub` the subject's, `act` the
// exchanging client (wrapping the subject's own `act`), its scope at most the subject's.
function tokenExchange(issuer, jwks) {
  const publicKeys = jose.createLocalJWKSet({
    keys: jwks.keys.map(({ d, p, q, dp, dq, qi, ...pub }) => pub),
  });
  const signer = jwks.keys[0];
  return async (ctx) => {
    const { client, params } = ctx.oidc;
    if (params.subject_token_type !== ACCESS_TOKEN_TYPE) {
      throw new errors.InvalidRequest('subject_token_type must be an access token');
    }
    if (params.requested_token_type && params.requested_token_type !== ACCESS_TOKEN_TYPE) {
      throw new errors.InvalidRequest('only access tokens are issued');
    }
    if (!EXCHANGE_AUDIENCES.includes(params.audience)) {
      throw new errors.InvalidTarget('the audience is not one this server issues tokens for');
    }
    let subject;
    try {
      ({ payload: subject } = await jose.jwtVerify(params.subject_token, publicKeys, { issuer }));
    } catch {
      throw new errors.InvalidGrant('subject_token is invalid or expired');
    }
    const who = subject.sub ?? subject.client_id;
    if (EXCHANGE_DENY.includes(subject.client_id)) {
      throw new errors.InvalidGrant('the subject may not be exchanged');
    }
    const held = String(subject.scope ?? '').split(' ').filter(Boolean);
    const asked = String(params.scope ?? '').split(' ').filter(Boolean);
    const scope = (asked.length ? asked.filter((s) => held.includes(s)) : held).join(' ');
    const now = Math.floor(Date.now() / 1000);
    const act = { sub: client.clientId, ...(subject.act ? { act: subject.act } : {}) };
    const key = await jose.importJWK(signer, signer.alg ?? 'RS256');
    const accessToken = await new jose.SignJWT({
      client_id: client.clientId, scope, act, jti: crypto.randomUUID(),
    })
      .setProtectedHeader({ alg: signer.alg ?? 'RS256', kid: signer.kid, typ: 'at+jwt' })
      .setIssuer(issuer).setSubject(who).setAudience(params.audience)
      .setIssuedAt(now).setExpirationTime(now + EXCHANGE_TTL)
      .sign(key);
    console.log(`EXCHANGE ${JSON.stringify({
      client_id: client.clientId, subject: who, audience: params.audience, ttl: EXCHANGE_TTL,
    })}`);
    ctx.body = {
      access_token: accessToken, issued_token_type: ACCESS_TOKEN_TYPE, token_type: 'Bearer',
      expires_in: EXCHANGE_TTL, scope,
    };
  };
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
