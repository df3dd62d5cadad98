// OAuth handshake probe with the TypeScript SDK's client-credentials provider, given only a client
// id, its secret and the MCP URL. Both SDK lines (pick with --sdk):
//   v1: @modelcontextprotocol/sdk 1.32.2     ClientCredentialsProvider from client/auth-extensions.js
//   v2: @modelcontextprotocol/client 2.4.0   ClientCredentialsProvider from the package root
// The script imports the SDKs by bare name, so it must run from a file under $PEERS_NPM_DIR
// (copy it there, as tests/tests/oauth_handshake.rs does).
//
//   node oauth_client.mjs --sdk v2 --client-id agent-alpha --client-secret alpha-secret URL
//
// Steps, on one session: connect + list tools; call the base tool (echo); call the step-up tool
// (get-tiny-image: 403 insufficient_scope for a token without mcp:tools.call); call the base
// tool again; when anything failed, the base tool once more on a fresh transport and provider.
// Every token request, PRM fetch and 401/403 is recorded from the wire (the transport's `fetch`,
// which the SDK also uses for discovery and token requests). Prints one JSON document:
//   {"sdk": "...", "connected": bool, "tools": [...], "steps": [{step, tool, ok, result|error}],
//    "token_requests": [{scope, resource, status, granted|error}], "challenges": [...], "prm": {...},
//    "trace": ["<s> METHOD /path bearer|- -> status", ...]}
import { parseArgs } from 'node:util';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    sdk: { type: 'string', default: 'v2' },
    'client-id': { type: 'string' },
    'client-secret': { type: 'string' },
    'base-tool': { type: 'string', default: 'echo' },
    'base-args': { type: 'string', default: '{"message":"hello"}' },
    'step-up-tool': { type: 'string', default: 'get-tiny-image' },
    'step-up-args': { type: 'string', default: '{}' },
    'step-timeout': { type: 'string', default: '30' },
  },
});
const [url] = positionals;
if (!url || !values['client-id'] || !values['client-secret']) {
  console.error('usage: oauth_client.mjs --sdk v1|v2 --client-id ID --client-secret SECRET URL');
  process.exit(2);
}
const stepMs = Number(values['step-timeout']) * 1000;

let Client, StreamableHTTPClientTransport, ClientCredentialsProvider, version;
if (values.sdk === 'v1') {
  ({ Client } = await import('@modelcontextprotocol/sdk/client/index.js'));
  ({ StreamableHTTPClientTransport } = await import('@modelcontextprotocol/sdk/client/streamableHttp.js'));
  ({ ClientCredentialsProvider } = await import('@modelcontextprotocol/sdk/client/auth-extensions.js'));
  version = '@modelcontextprotocol/sdk 1.32.2';
} else {
  ({ Client, StreamableHTTPClientTransport, ClientCredentialsProvider } = await import('@modelcontextprotocol/client'));
  version = '@modelcontextprotocol/client 2.4.0';
}
// The SDK warns (console.warn) that omitting expectedIssuer is deprecated: keep stdout JSON only.
console.warn = (...a) => console.error(...a);

const out = { sdk: version, client_id: values['client-id'], connected: false, steps: [],
  token_requests: [], challenges: [], prm: null, trace: [] };
const t0 = performance.now();

async function recordingFetch(input, init) {
  const req = new Request(input, init);
  const body = req.method === 'POST' ? await req.clone().text() : '';
  const line = `${((performance.now() - t0) / 1000).toFixed(3)} ${req.method} ${new URL(req.url).pathname} ${
    req.headers.has('authorization') ? 'bearer' : '-'}`;
  let res;
  try {
    res = await fetch(req);
  } catch (e) {
    out.trace.push(`${line} -> ${e?.message} (${e?.cause?.code ?? e?.cause?.message ?? ''})`);
    throw e;
  }
  out.trace.push(`${line} -> ${res.status}`);
  const href = req.url;
  if (req.method === 'POST' && href.replace(/\/$/, '').endsWith('/token')) {
    const form = new URLSearchParams(body);
    const entry = { scope: form.get('scope'), resource: form.get('resource'), status: res.status };
    const json = await res.clone().json().catch(() => null);
    if (res.status === 200) entry.granted = json?.scope ?? null;
    else { entry.error = json?.error; entry.error_description = json?.error_description; }
    out.token_requests.push(entry);
  } else if (href.includes('/.well-known/oauth-protected-resource') && res.status === 200) {
    out.prm = await res.clone().json().catch(() => null);
  } else if (href === url && (res.status === 401 || res.status === 403)) {
    out.challenges.push({ status: res.status, had_token: req.headers.has('authorization'),
      www_authenticate: res.headers.get('www-authenticate') });
  }
  return res;
}

function describe(e) {
  const causes = [];
  for (let c = e?.cause; c && causes.length < 4; c = c.cause) causes.push(`${c.code ?? c.name}: ${c.message}`);
  return { exception: e?.constructor?.name ?? typeof e, message: String(e?.message ?? e).slice(0, 500),
    code: e?.code ?? null, status: e?.status ?? e?.data?.status ?? null, cause: causes.join(' <- ') || null };
}

function withDeadline(promise, what) {
  let timer;
  return Promise.race([promise, new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${stepMs} ms`)), stepMs);
  })]).finally(() => clearTimeout(timer));
}

async function call(client, step, tool, argsJson) {
  try {
    const res = await withDeadline(client.callTool({ name: tool, arguments: JSON.parse(argsJson) }), tool);
    const text = (res.content ?? []).map((c) => c.text ?? `<${c.type}>`).join(' ').slice(0, 300);
    out.steps.push({ step, tool, ok: !res.isError, result: { is_error: !!res.isError, text } });
  } catch (e) {
    out.steps.push({ step, tool, ok: false, error: describe(e) });
  }
}

async function session(work) {
  const authProvider = new ClientCredentialsProvider({
    clientId: values['client-id'],
    clientSecret: values['client-secret'],
  });
  const transport = new StreamableHTTPClientTransport(new URL(url), { authProvider, fetch: recordingFetch });
  const client = new Client({ name: 'mcp-warden-oauth-probe', version: '0.0.1' });
  try {
    await withDeadline(client.connect(transport), 'connect');
    await work(client);
  } finally {
    await transport.terminateSession?.().catch(() => {});
    await client.close().catch(() => {});
  }
}

try {
  await session(async (client) => {
    out.connected = true;
    const { tools } = await withDeadline(client.listTools(), 'tools/list');
    out.tools = tools.map((t) => t.name).sort();
    await call(client, 'base', values['base-tool'], values['base-args']);
    await call(client, 'step_up', values['step-up-tool'], values['step-up-args']);
    await call(client, 'base_again', values['base-tool'], values['base-args']);
  });
} catch (e) {
  out.session_error = describe(e);
}
if (out.session_error || out.steps.some((s) => !s.ok)) {
  try {
    await session((client) => call(client, 'base_fresh_session', values['base-tool'], values['base-args']));
  } catch (e) {
    out.steps.push({ step: 'base_fresh_session', tool: values['base-tool'], ok: false, error: describe(e) });
  }
}
console.log(JSON.stringify(out));
process.exit(0);
