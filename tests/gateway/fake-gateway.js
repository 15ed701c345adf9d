#!/usr/bin/env node
// A local stand-in for the chatmail push gateway; see README.md next to it.
'use strict';

const fs = require('fs');
const http = require('http');
const https = require('https');
const http2 = require('http2');

function parseArgs(argv) {
  const opts = { port: 0, host: '127.0.0.1', portFile: null, tls: false, cert: null, key: null,
                 http1Only: false, delayMs: 0, log: null };
  const valueOf = (i) => {
    if (i + 1 >= argv.length) throw new Error(`${argv[i]} needs a value`);
    return argv[i + 1];
  };
  for (let i = 0; i < argv.length; i++) {
    switch (argv[i]) {
      case '--port': opts.port = Number(valueOf(i)); i++; break;
      case '--host': opts.host = valueOf(i); i++; break;
      case '--port-file': opts.portFile = valueOf(i); i++; break;
      case '--tls': opts.tls = true; break;
      case '--cert': opts.cert = valueOf(i); i++; break;
      case '--key': opts.key = valueOf(i); i++; break;
      case '--http1-only': opts.http1Only = true; break;
      case '--delay-ms': opts.delayMs = Number(valueOf(i)); i++; break;
      case '--log': opts.log = valueOf(i); i++; break;
      default: throw new Error(`unknown option ${argv[i]}`);
    }
  }
  if (opts.tls && (!opts.cert || !opts.key)) throw new Error('--tls needs --cert and --key');
  if (!Number.isInteger(opts.port) || opts.port < 0) throw new Error('--port must be a number');
  if (!Number.isFinite(opts.delayMs) || opts.delayMs < 0) throw new Error('--delay-ms must be >= 0');
  return opts;
}

// What the gateway has seen since the last reset.
class Record {
  constructor() { this.reset(); }
  reset() {
    this.requests = [];
    this.perConnection = new Map();  // connection id -> {total, open, maxOpen}
    this.failCounts = new Map();     // token -> requests seen (fail<N>x- tokens)
  }
  begin(token, httpVersion, connection) {
    const entry = { token, time_ms: Date.now(), http_version: httpVersion, connection, status: null };
    this.requests.push(entry);
    const c = this.perConnection.get(connection) || { total: 0, open: 0, maxOpen: 0 };
    c.total++;
    c.open++;
    c.maxOpen = Math.max(c.maxOpen, c.open);
    this.perConnection.set(connection, c);
    return entry;
  }
  end(entry) {
    entry.closed_ms = Date.now();
    const c = this.perConnection.get(entry.connection);
    if (c && c.open > 0) c.open--;
  }
  stats() {
    let maxStreams = 0;
    let maxConcurrent = 0;
    for (const c of this.perConnection.values()) {
      maxStreams = Math.max(maxStreams, c.total);
      maxConcurrent = Math.max(maxConcurrent, c.maxOpen);
    }
    return { requests: this.requests.length, connections: this.perConnection.size,
             max_streams_per_connection: maxStreams, max_concurrent_per_connection: maxConcurrent };
  }
}

// The scripted answer for a token: {status, headers} or {hang: true}.
function scriptedAnswer(token, record) {
  let m = /^s(\d{3})ra(\d+)-/.exec(token);
  if (m) return { status: Number(m[1]), headers: { 'retry-after': m[2] } };
  m = /^s(\d{3})-/.exec(token);
  if (m) return { status: Number(m[1]), headers: {} };
  m = /^fail(\d+)x-/.exec(token);
  if (m) {
    const seen = (record.failCounts.get(token) || 0) + 1;
    record.failCounts.set(token, seen);
    return { status: seen <= Number(m[1]) ? 500 : 200, headers: {} };
  }
  if (token.startsWith('hang-')) return { hang: true };
  if (token.startsWith('redirect-')) return { status: 302, headers: { location: 'http://127.0.0.1:1/elsewhere' } };
  if (token.startsWith('huge-')) return { status: 200, headers: {}, body: 'huge' };
  if (token.startsWith('slow-')) return { status: 200, headers: {}, body: 'slow' };
  return { status: 200, headers: {} };
}

function readBody(req, limit) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > limit) { reject(new Error('body too large')); req.destroy(); return; }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

// Bodies a gateway should never send. 'huge': 64 MiB as fast as the client
// takes them; 'slow': one byte every 200 ms, never ending. entry.body_bytes
// counts what was written before the client gave up (closed the stream).
const kHugeBody = 64 * 1024 * 1024;
function streamBody(res, kind, entry) {
  entry.body_bytes = 0;
  res.writeHead(entry.status, { 'content-type': 'application/octet-stream' });
  if (kind === 'slow') {
    const timer = setInterval(() => {
      if (res.destroyed || res.writableEnded) return clearInterval(timer);
      res.write('x');
      entry.body_bytes += 1;
    }, 200);
    res.on('close', () => clearInterval(timer));
    return;
  }
  const chunk = Buffer.alloc(64 * 1024, 0x78);
  const pump = () => {
    while (!res.destroyed && entry.body_bytes < kHugeBody) {
      entry.body_bytes += chunk.length;
      if (!res.write(chunk)) return res.once('drain', pump);
    }
    if (!res.destroyed) res.end();
  };
  res.on('error', () => {});
  pump();
}

function sendJson(res, status, value) {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function writePortFile(file, port) {
  const tmp = `${file}.tmp${process.pid}`;
  fs.writeFileSync(tmp, `${port}\n`);
  fs.renameSync(tmp, file);
}

function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`fake-gateway: ${e.message}\n`);
    process.exit(2);
  }

  const record = new Record();
  let mode = {};
  let nextConnection = 0;
  const sockets = new Set();
  const logStream = opts.log ? fs.createWriteStream(opts.log, { flags: 'a' }) : null;

  // A client killed mid-request (kill -9) takes its HTTP/2 session with it:
  // the session may be gone by the time the body has been read.
  const connectionOf = (req) => {
    const session = req.stream && req.stream.session;
    const socket = req.httpVersion === '2.0' ? session && session.socket : req.socket;
    return socket ? socket.cmnConnectionId : null;
  };
  const dropConnection = (req) => {
    if (req.httpVersion === '2.0') { if (req.stream.session) req.stream.session.destroy(); }
    else req.socket.destroy();
  };

  async function handleNotify(req, res) {
    const connection = connectionOf(req);
    let body;
    try {
      body = await readBody(req, 64 * 1024);
    } catch (e) {
      return;
    }
    const token = body.toString('latin1');
    const entry = record.begin(token, req.httpVersion, connection);
    if (logStream) logStream.write(JSON.stringify({ token, time_ms: entry.time_ms,
      http_version: entry.http_version, connection: entry.connection }) + '\n');
    res.on('close', () => record.end(entry));

    let answer;
    if (mode.close) {
      dropConnection(req);
      return;
    } else if (mode.hang) {
      answer = { hang: true };
    } else if (mode.status) {
      answer = { status: Number(mode.status), headers: {} };
    } else {
      answer = scriptedAnswer(token, record);
    }
    if (answer.hang) return;
    const respond = () => {
      if (res.writableEnded || res.destroyed) return;
      entry.status = answer.status;
      if (answer.body) return streamBody(res, answer.body, entry);
      res.writeHead(answer.status, { ...answer.headers, 'content-length': 0 });
      res.end();
    };
    if (opts.delayMs > 0) setTimeout(respond, opts.delayMs);
    else respond();
  }

  async function handleControl(req, res, url) {
    if (req.method === 'GET' && url === '/control/requests') return sendJson(res, 200, record.requests);
    if (req.method === 'GET' && url === '/control/stats') return sendJson(res, 200, record.stats());
    if (req.method === 'POST' && url === '/control/reset') {
      record.reset();
      return sendJson(res, 200, {});
    }
    if (req.method === 'POST' && url === '/control/mode') {
      let parsed;
      try {
        parsed = JSON.parse((await readBody(req, 64 * 1024)).toString('utf8') || '{}');
      } catch (e) {
        return sendJson(res, 400, { error: `bad mode: ${e.message}` });
      }
      if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed))
        return sendJson(res, 400, { error: 'mode must be a JSON object' });
      mode = parsed;
      return sendJson(res, 200, mode);
    }
    return sendJson(res, 404, { error: 'no such control endpoint' });
  }

  const onRequest = (req, res) => {
    const url = (req.url || '').split('?')[0];
    if (req.method === 'POST' && url === '/notify') {
      handleNotify(req, res);
    } else if (url.startsWith('/control/')) {
      handleControl(req, res, url);
    } else {
      sendJson(res, 404, { error: 'not found' });
    }
  };

  let server;
  if (!opts.tls) {
    server = http.createServer(onRequest);
  } else {
    const tlsOptions = { cert: fs.readFileSync(opts.cert), key: fs.readFileSync(opts.key) };
    if (opts.http1Only) {
      server = https.createServer({ ...tlsOptions, ALPNProtocols: ['http/1.1'] }, onRequest);
    } else {
      // libcurl 7.88 (Debian 12) sends RST_STREAM after every finished
      // stream; nghttp2's rapid-reset guard counts them (burst 1000, then
      // 33/s) and closes the connection with GOAWAY(INTERNAL_ERROR). The
      // real gateway (hyper) counts only streams reset before it answered,
      // so lift the guard where Node lets us (options of newer Node, from
      // nodejs/node#54875; Node 20 ignores them and keeps the guard).
      server = http2.createSecureServer({ ...tlsOptions, allowHTTP1: true,
        settings: { maxConcurrentStreams: 1000 },
        streamResetBurst: 1000000, streamResetRate: 1000000 }, onRequest);
    }
  }
  const track = (socket) => {
    socket.cmnConnectionId = ++nextConnection;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  };
  server.on(opts.tls ? 'secureConnection' : 'connection', track);
  server.keepAliveTimeout = 60000;

  server.listen(opts.port, opts.host, () => {
    const port = server.address().port;
    if (opts.portFile) writePortFile(opts.portFile, port);
    process.stderr.write(`fake-gateway: listening on ${opts.host}:${port}` +
      `${opts.tls ? (opts.http1Only ? ' (TLS, http/1.1)' : ' (TLS, h2 + http/1.1)') : ' (plain HTTP/1.1)'}\n`);
  });
  const stop = () => {
    for (const s of sockets) s.destroy();
    server.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 1000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

if (require.main === module) main();
module.exports = { scriptedAnswer, parseArgs };
