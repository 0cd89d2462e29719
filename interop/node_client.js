#!/usr/bin/env node
// Interop test client built on the Node `ws` library.
//
// Usage: node interop/node_client.js [DEFLATE OPTIONS] ws://127.0.0.1:PORT/
//
// DEFLATE OPTIONS (see PROTOCOL.md; none: permessage-deflate is off):
//   --deflate                      offer permessage-deflate (ws defaults, but
//                                  threshold 0: every message is compressed)
//   --server-no-context-takeover   } offer it with these settings
//   --client-no-context-takeover   } (each implies --deflate)
//   --server-max-window-bits N     }
//   --client-max-window-bits N     }
// With compression, the deflate checks of PROTOCOL.md run too.
//
// Runs the scripted checks of PROTOCOL.md against a server implementing the
// command protocol. Prints `ok <name>` or `FAIL <name>: <detail>` per check and
// a final `# N checks, P ok, F failed` line; exits 0 only if every check passed.
'use strict';

const WebSocket = require('./load_ws');
const { parseDeflateArgs } = require('./deflate_args');

const MAX_PAYLOAD = 64 * 1024 * 1024; // incoming message limit (>= 16 MiB)
const TIMEOUT_MS = 15000; // time allowed for any single check
const SIZES = [0, 125, 126, 65535, 65536, 1048576];

class CheckFailed extends Error {}

function expect(cond, detail) {
  if (!cond) throw new CheckFailed(detail);
}

// Payload of `!frag` (and of the echo tests): a-z or i % 251, repeating.
function pattern(kind, size) {
  const buf = Buffer.alloc(size);
  for (let i = 0; i < size; i++) buf[i] = kind === 'text' ? 97 + (i % 26) : i % 251;
  return buf;
}

// A received message is {data: Buffer, isBinary}; compare type and bytes.
function expectMessage(msg, wantData, wantBinary) {
  const kind = (b) => (b ? 'binary' : 'text');
  expect(msg.isBinary === wantBinary,
    `expected a ${kind(wantBinary)} message, got ${kind(msg.isBinary)}`);
  if (msg.data.equals(wantData)) return;
  if (msg.data.length <= 64 && wantData.length <= 64) {
    throw new CheckFailed(`expected ${JSON.stringify(wantData.toString('latin1'))}, ` +
      `got ${JSON.stringify(msg.data.toString('latin1'))}`);
  }
  expect(msg.data.length === wantData.length,
    `expected ${wantData.length} bytes, got ${msg.data.length}`);
  let i = 0;
  while (msg.data[i] === wantData[i]) i++;
  throw new CheckFailed(`content differs at offset ${i}`);
}

// Wraps a ws client so that messages, pings, pongs and the close can be
// awaited one at a time, in arrival order.
class Conn {
  // `perMessageDeflate`: false, or the ws options (see deflate_args.js).
  static open(url, perMessageDeflate) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { perMessageDeflate, maxPayload: MAX_PAYLOAD });
      let extensions = '';
      ws.once('upgrade', (res) => {
        extensions = res.headers['sec-websocket-extensions'] || '';
      });
      ws.once('open', () => resolve(new Conn(ws, extensions)));
      ws.once('error', reject);
    });
  }

  constructor(ws, extensions) {
    this.ws = ws;
    this.extensions = extensions; // the server's Sec-WebSocket-Extensions
    this.queues = { message: [], ping: [], pong: [] }; // events not yet taken
    this.waiters = { message: [], ping: [], pong: [] }; // takers not yet served
    ws.on('message', (data, isBinary) => this.push('message', { data, isBinary }));
    ws.on('ping', (data) => this.push('ping', data)); // ws answers it by itself
    ws.on('pong', (data) => this.push('pong', data));
    ws.on('error', () => {}); // surfaced through 'close' (code 1006)
    // The CloseEvent form of 'close' also says whether the handshake was clean.
    this.closed = new Promise((resolve) => {
      ws.addEventListener('close', (ev) => {
        resolve({ code: ev.code, reason: ev.reason, wasClean: ev.wasClean });
        for (const kind of Object.keys(this.waiters)) {
          for (const w of this.waiters[kind].splice(0)) {
            w.reject(new CheckFailed(`connection closed (${ev.code} '${ev.reason}') ` +
              `while waiting for a ${kind}`));
          }
        }
      });
    });
  }

  get isOpen() {
    return this.ws.readyState === WebSocket.OPEN;
  }

  push(kind, item) {
    const w = this.waiters[kind].shift();
    if (w) w.resolve(item);
    else this.queues[kind].push(item);
  }

  // Next event of `kind` ('message', 'ping' or 'pong').
  next(kind) {
    if (this.queues[kind].length) return Promise.resolve(this.queues[kind].shift());
    if (this.ws.readyState >= WebSocket.CLOSING) {
      return Promise.reject(new CheckFailed(`connection closed while waiting for a ${kind}`));
    }
    return new Promise((resolve, reject) => this.waiters[kind].push({ resolve, reject }));
  }

  // Send `data` as one message; with `cuts` (byte offsets), as several frames.
  send(data, binary, cuts) {
    if (!cuts) return this.ws.send(data, { binary });
    const bounds = [0, ...cuts, data.length];
    for (let k = 0; k + 1 < bounds.length; k++) {
      // fin=false keeps the message open; ws sends continuation frames.
      this.ws.send(data.subarray(bounds[k], bounds[k + 1]),
        { binary, fin: k + 2 === bounds.length });
    }
    return undefined;
  }
}

// The parameters of the permessage-deflate in an extensions header.
function deflateParams(value) {
  for (const ext of value.split(',')) {
    const [name, ...params] = ext.split(';').map((p) => p.trim());
    if (name === 'permessage-deflate') {
      const out = {};
      for (const p of params.filter(Boolean)) {
        const eq = p.indexOf('=');
        out[eq < 0 ? p : p.slice(0, eq)] = eq < 0 ? true : p.slice(eq + 1);
      }
      return out;
    }
  }
  throw new CheckFailed(`permessage-deflate was not negotiated (extensions: '${value}')`);
}

// The message of `echo-context-takeover`: ~300 bytes of JSON-like text.
function contextMessage(seq) {
  return Buffer.from('{"type":"quote","symbol":"TETHER","venue":"XWBS","bid":101.25,"ask":101.5,' +
    '"sizes":[100,250,500,1000],"flags":{"halted":false,"auction":false},' +
    `"trader":"héllo wörld €","seq":${seq},"note":"the same message, again and ` +
    'again, so that the second copy compresses to a few bytes"}');
}

class Client {
  constructor(url, perMessageDeflate) {
    this.url = url;
    this.perMessageDeflate = perMessageDeflate; // false: no compression
    this.conn = null; // the shared connection for the non-close checks
    this.results = [];
  }

  // The shared connection, reopened if an earlier check broke it.
  async shared() {
    if (!this.conn || !this.conn.isOpen) {
      this.conn = await Conn.open(this.url, this.perMessageDeflate);
    }
    return this.conn;
  }

  // Run one check with a timeout and print its result line.
  async check(name, fn) {
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new CheckFailed(`timed out after ${TIMEOUT_MS / 1000} s`)),
        TIMEOUT_MS);
    });
    let failure = null;
    try {
      await Promise.race([fn(), timeout]);
    } catch (err) {
      failure = err instanceof CheckFailed ? err.message : `${err.name}: ${err.message}`;
      if (this.conn) this.conn.ws.terminate(); // state unknown: start afresh
      this.conn = null;
    } finally {
      clearTimeout(timer);
    }
    this.results.push(failure === null);
    const line = failure === null ? `ok ${name}` : `FAIL ${name}: ${failure}`;
    process.stdout.write(`${line.replace(/\n/g, ' ')}\n`);
  }

  async echo(data, binary, cuts) {
    const c = await this.shared();
    c.send(data, binary, cuts);
    expectMessage(await c.next('message'), data, binary);
  }

  async clientPing() {
    const c = await this.shared();
    const payload = Buffer.from('tether-ping');
    c.ws.ping(payload);
    const pong = await c.next('pong');
    expect(pong.equals(payload), `pong payload ${pong.toString('hex')}, expected ` +
      `${payload.toString('hex')}`);
  }

  async serverPing() {
    const c = await this.shared();
    c.queues.ping.length = 0;
    c.send('!ping 0102ff', false);
    expectMessage(await c.next('message'), Buffer.from('!pong 0102ff'), false);
    // The Ping precedes the `!pong` on the wire, so its event is queued by now.
    expect(c.queues.ping.length === 1, `saw ${c.queues.ping.length} pings, expected 1`);
    const ping = c.queues.ping.shift();
    expect(ping.toString('hex') === '0102ff', `server's ping payload was ${ping.toString('hex')}`);
  }

  async serverFrag(kind, size, parts) {
    const c = await this.shared();
    c.send(`!frag ${kind} ${size} ${parts}`, false);
    // ws reassembles fragments, so only the complete message can be checked.
    expectMessage(await c.next('message'), pattern(kind, size), kind === 'binary');
  }

  // Own connection: the client closes; the server's Close must echo the code.
  async clientClose(code, reason) {
    const c = await Conn.open(this.url, this.perMessageDeflate);
    c.ws.close(code, reason);
    const got = await c.closed; // code/reason from the server's Close frame
    expect(got.code === code, `server's Close has code ${got.code} reason '${got.reason}', ` +
      `expected ${code}`);
    expect(got.wasClean, 'closing handshake was not clean');
  }

  // Own connection: the server closes on request.
  async serverClose() {
    const c = await Conn.open(this.url, this.perMessageDeflate);
    c.send('!close 4002 server-bye', false);
    const got = await c.closed;
    expect(got.code === 4002 && got.reason === 'server-bye',
      `got Close ${got.code} '${got.reason}', expected 4002 'server-bye'`);
    expect(got.wasClean, 'closing handshake was not clean');
    expect(c.queues.message.length === 0, 'unexpected message before the Close');
  }

  // Deflate checks (with compression only).
  async deflateNegotiated() {
    const c = await this.shared();
    process.stdout.write(`extensions ${c.extensions}\n`);
    const params = deflateParams(c.extensions);
    const o = this.perMessageDeflate;
    if (o.serverNoContextTakeover) {
      expect(params.server_no_context_takeover === true,
        `server_no_context_takeover was not accepted: '${c.extensions}'`);
    }
    if (o.serverMaxWindowBits) {
      expect(Number(params.server_max_window_bits) <= o.serverMaxWindowBits,
        `server_max_window_bits=${o.serverMaxWindowBits} was not honoured: '${c.extensions}'`);
    }
    if (o.clientMaxWindowBits && params.client_max_window_bits) {
      expect(Number(params.client_max_window_bits) <= o.clientMaxWindowBits,
        `client_max_window_bits above ${o.clientMaxWindowBits}: '${c.extensions}'`);
    }
  }

  async serverExt() {
    const c = await this.shared();
    c.send('!ext', false);
    const want = c.extensions ? `!ext ${c.extensions}` : '!ext';
    expectMessage(await c.next('message'), Buffer.from(want), false);
  }

  async contextTakeover() {
    for (const seq of [1, 1, 1, 2, 3, 1]) await this.echo(contextMessage(seq), false);
    // Pipelined: all sent before any echo is read.
    const c = await this.shared();
    const msgs = [];
    for (let seq = 0; seq < 20; seq++) msgs.push(contextMessage(seq));
    for (const m of msgs) c.send(m, false);
    for (const m of msgs) expectMessage(await c.next('message'), m, false);
  }

  async run() {
    if (this.perMessageDeflate) {
      await this.check('deflate-negotiated', () => this.deflateNegotiated());
      await this.check('server-ext', () => this.serverExt());
      await this.check('echo-context-takeover', () => this.contextTakeover());
    }

    for (const kind of ['text', 'binary']) {
      for (const size of SIZES) {
        await this.check(`echo-${kind}-${size}`,
          () => this.echo(pattern(kind, size), kind === 'binary'));
      }
    }

    // 70006 bytes of UTF-8 in 7 fragments, each boundary moved forward to
    // land inside a multibyte character.
    const text = Buffer.from('héllo wörld €'.repeat(4118));
    const textCuts = [];
    for (let k = 1; k < 7; k++) {
      let i = Math.floor((k * text.length) / 7);
      while ((text[i] & 0xc0) !== 0x80) i++; // advance to a continuation byte
      textCuts.push(i);
    }
    await this.check('echo-fragmented-text', () => this.echo(text, false, textCuts));

    const blob = Buffer.alloc(100000);
    for (let i = 0; i < blob.length; i++) blob[i] = (i * 7 + 3) % 256;
    const blobCuts = [1, 125, 126, 65661, 99999]; // odd sizes, incl. 1-byte
    await this.check('echo-fragmented-binary', () => this.echo(blob, true, blobCuts));

    await this.check('client-ping', () => this.clientPing());
    await this.check('server-ping', () => this.serverPing());
    await this.check('server-frag-text', () => this.serverFrag('text', 70000, 5));
    await this.check('server-frag-binary', () => this.serverFrag('binary', 65536, 4));
    if (this.conn) {
      this.conn.ws.close();
      await this.conn.closed;
    }

    await this.check('client-close-4001', () => this.clientClose(4001, 'bye'));
    await this.check('server-close-4002', () => this.serverClose());
    await this.check('client-close-1000', () => this.clientClose(1000, ''));

    const ok = this.results.filter(Boolean).length;
    const failed = this.results.length - ok;
    process.stdout.write(`# ${this.results.length} checks, ${ok} ok, ${failed} failed\n`);
    return failed === 0;
  }
}

let args;
try {
  args = parseDeflateArgs(process.argv.slice(2));
} catch (err) {
  args = { error: err.message, rest: [] };
}
const url = args.rest[0];
if (args.error || args.rest.length !== 1 || !url.startsWith('ws://')) {
  console.error(`usage: node_client.js [DEFLATE OPTIONS] ws://HOST:PORT/${args.error ? `: ${args.error}` : ''}`);
  process.exit(2);
}
new Client(url, args.perMessageDeflate).run().then(
  (allOk) => process.exit(allOk ? 0 : 1),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
