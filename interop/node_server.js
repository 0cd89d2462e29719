#!/usr/bin/env node
// Interop echo/command server built on the Node `ws` library.
//
// Usage: node interop/node_server.js [DEFLATE OPTIONS]
//
// DEFLATE OPTIONS (see PROTOCOL.md; none: permessage-deflate is off):
//   --deflate                      accept permessage-deflate (ws defaults, but
//                                  threshold 0: every message is compressed)
//   --server-no-context-takeover   } accept it with these settings
//   --client-no-context-takeover   } (each implies --deflate)
//   --server-max-window-bits N     }
//   --client-max-window-bits N     }
//
// Listens on 127.0.0.1 with an ephemeral port, prints `LISTENING <port>` on
// stdout, then serves until SIGTERM/SIGINT. Implements the command protocol in
// PROTOCOL.md: echo everything except text commands starting with `!`.
'use strict';

const { WebSocketServer } = require('./load_ws');
const { parseDeflateArgs } = require('./deflate_args');

const MAX_PAYLOAD = 64 * 1024 * 1024; // incoming message limit (>= 16 MiB)
const PONG_TIMEOUT_MS = 30000; // how long a `!ping` waits for its Pong

// Payload of `!frag`: 'a'..'z' repeating for text, i % 251 for binary.
function pattern(kind, size) {
  const buf = Buffer.alloc(size);
  for (let i = 0; i < size; i++) buf[i] = kind === 'text' ? 97 + (i % 26) : i % 251;
  return buf;
}

// Send `data` as one message in `parts` frames: FIN=0 on all but the last.
// ws emits the first frame with the data opcode, later ones as continuations.
function sendFragmented(ws, data, parts, binary) {
  const n = data.length;
  for (let k = 0; k < parts; k++) {
    const chunk = data.subarray(Math.floor((k * n) / parts), Math.floor(((k + 1) * n) / parts));
    ws.send(chunk, { binary, fin: k === parts - 1 });
  }
}

// Execute one `!...` command. Returns a promise when the connection must wait
// (for `!ping`), so that later messages are handled after the `!pong`.
function runCommand(ws, line) {
  const sp = line.indexOf(' ');
  const name = sp < 0 ? line : line.slice(0, sp);
  const rest = sp < 0 ? '' : line.slice(sp + 1);
  if (name === '!close') {
    const sp2 = rest.indexOf(' ');
    const codeS = sp2 < 0 ? rest : rest.slice(0, sp2);
    const reason = sp2 < 0 ? '' : rest.slice(sp2 + 1);
    if (!/^[0-9]+$/.test(codeS)) return ws.send(`!error bad close code '${codeS}'`);
    try {
      ws.close(Number(codeS), reason);
    } catch (err) { // invalid code or reason too long
      ws.send(`!error close failed: ${err.message}`);
    }
  } else if (name === '!ping') {
    if (!/^([0-9a-fA-F]{2})*$/.test(rest) || rest.length > 250) {
      return ws.send(`!error bad ping payload '${rest}'`);
    }
    const payload = Buffer.from(rest, 'hex');
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        ws.send(`!error no pong within ${PONG_TIMEOUT_MS / 1000} s`);
        done();
      }, PONG_TIMEOUT_MS);
      function onPong(data) {
        if (!data.equals(payload)) return; // some other pong; keep waiting
        const hex = payload.toString('hex');
        ws.send(hex ? `!pong ${hex}` : '!pong');
        done();
      }
      function done() {
        clearTimeout(timer);
        ws.off('pong', onPong);
        ws.off('close', done);
        resolve();
      }
      ws.on('pong', onPong);
      ws.on('close', done);
      ws.ping(payload);
    });
  } else if (name === '!frag') {
    const args = rest.split(' ');
    const ok = args.length === 3 && (args[0] === 'text' || args[0] === 'binary') &&
      /^[0-9]+$/.test(args[1]) && /^[0-9]+$/.test(args[2]) && Number(args[2]) >= 1;
    if (!ok) return ws.send(`!error usage: !frag text|binary SIZE PARTS (got '${rest}')`);
    const kind = args[0];
    sendFragmented(ws, pattern(kind, Number(args[1])), Number(args[2]), kind === 'binary');
  } else if (name === '!ext') {
    // The Sec-WebSocket-Extensions this server answered (empty: none).
    const value = answered.get(ws) || '';
    ws.send(value ? `!ext ${value}` : '!ext');
  } else if (name === '!offer') {
    // The client's Sec-WebSocket-Extensions offer (empty: none).
    const value = offered.get(ws) || '';
    ws.send(value ? `!offer ${value}` : '!offer');
  } else {
    ws.send(`!error unknown command '${name}'`);
  }
  return undefined;
}

// Per connection: the extensions header the client offered and the one this
// server answered (captured from the 'headers' event, keyed by request).
const offered = new WeakMap();
const answered = new WeakMap();
const answeredByRequest = new WeakMap();

let perMessageDeflate;
try {
  const args = parseDeflateArgs(process.argv.slice(2));
  if (args.rest.length) throw new Error(`unexpected argument '${args.rest[0]}'`);
  perMessageDeflate = args.perMessageDeflate;
} catch (err) {
  console.error(`usage: node_server.js [DEFLATE OPTIONS]: ${err.message}`);
  process.exit(2);
}

const wss = new WebSocketServer({
  host: '127.0.0.1',
  port: 0,
  perMessageDeflate, // false unless a deflate option was given
  maxPayload: MAX_PAYLOAD,
});

wss.on('headers', (headers, req) => {
  const prefix = 'sec-websocket-extensions:';
  const line = headers.find((h) => h.toLowerCase().startsWith(prefix));
  answeredByRequest.set(req, line ? line.slice(prefix.length).trim() : '');
});

wss.on('connection', (ws, req) => {
  offered.set(ws, req.headers['sec-websocket-extensions'] || '');
  answered.set(ws, answeredByRequest.get(req) || '');
  // Messages are processed strictly in order; a pending `!ping` holds the
  // queue until its Pong arrives.
  let queue = Promise.resolve();
  ws.on('message', (data, isBinary) => {
    queue = queue.then(() => {
      if (ws.readyState !== ws.OPEN) return undefined;
      // `data` is a Buffer; text arrives already UTF-8 validated by ws.
      if (!isBinary && data.length > 0 && data[0] === 0x21 /* '!' */) {
        return runCommand(ws, data.toString('utf8'));
      }
      ws.send(data, { binary: isBinary });
      return undefined;
    });
  });
  ws.on('error', (err) => console.error(`connection error: ${err.message}`));
});

wss.on('listening', () => {
  process.stdout.write(`LISTENING ${wss.address().port}\n`);
});

function shutdown() {
  for (const client of wss.clients) client.terminate();
  wss.close(() => process.exit(0));
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
