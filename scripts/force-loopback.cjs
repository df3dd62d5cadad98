// Preload (`node -r scripts/force-loopback.cjs ...`) that forces every TCP listen() onto 127.0.0.1.
// Needed because @modelcontextprotocol/server-everything (and the conformance fixture) call
// app.listen(PORT) with no host, which binds all interfaces. Listens on a numeric port without a
// host, option objects without host/path, and bare listen() / listen(cb) are rewritten; IPC
// (socket path) listens are left alone. Source: shared/reference/mcp-peers/force-loopback.cjs,
// extended to cover the no-port forms.
'use strict';
const net = require('node:net');
const orig = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  const a0 = args[0];
  if (a0 === undefined || typeof a0 === 'function') {
    if (a0 === undefined) args.shift();
    args.unshift(0, '127.0.0.1');
  } else if (typeof a0 === 'number' || (typeof a0 === 'string' && /^\d+$/.test(a0))) {
    if (typeof args[1] !== 'string') args.splice(1, 0, '127.0.0.1');
  } else if (a0 && typeof a0 === 'object' && !a0.path && !a0.host && !a0._handle && !a0.fd) {
    args[0] = { ...a0, host: '127.0.0.1' };
  }
  return orig.apply(this, args);
};
