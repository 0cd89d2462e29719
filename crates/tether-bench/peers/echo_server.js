// Echo server for tether-bench's compressed cells: Node ws with
// perMessageDeflate enabled at its defaults, sending back every message
// with the type it came with.
//
// Usage: NODE_PATH=<node_modules> node echo_server.js
// Listens on 127.0.0.1, an ephemeral port, prints `LISTENING <port>`, and
// serves until killed.
'use strict';

const { WebSocketServer } = require('ws');

const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: true });
wss.on('listening', () => {
  process.stdout.write(`LISTENING ${wss.address().port}\n`);
});
wss.on('connection', (ws) => {
  // The benchmark drops its connections at the end of each run.
  ws.on('error', () => {});
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});
