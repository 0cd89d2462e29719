// The permessage-deflate command-line options of node_server.js and
// node_client.js (see PROTOCOL.md, "Compression"), as `ws` options.
'use strict';

const FLAGS = {
  '--server-no-context-takeover': 'serverNoContextTakeover',
  '--client-no-context-takeover': 'clientNoContextTakeover',
};
const WINDOW_BITS = {
  '--server-max-window-bits': 'serverMaxWindowBits',
  '--client-max-window-bits': 'clientMaxWindowBits',
};

// Parses `argv`. Returns `{ perMessageDeflate, rest }`: `perMessageDeflate` is
// `false` when no deflate option was given, else the ws options (threshold 0,
// so that every message is compressed, plus the settings given); `rest` holds
// the other arguments. Throws on a bad option.
function parseDeflateArgs(argv) {
  let enabled = false;
  const opts = { threshold: 0 };
  const rest = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--deflate') {
      enabled = true;
    } else if (FLAGS[arg]) {
      enabled = true;
      opts[FLAGS[arg]] = true;
    } else if (WINDOW_BITS[arg]) {
      const n = Number(argv[++i]);
      if (!Number.isInteger(n) || n < 8 || n > 15) {
        throw new Error(`${arg} needs a number from 8 to 15, got '${argv[i]}'`);
      }
      enabled = true;
      opts[WINDOW_BITS[arg]] = n;
    } else if (arg.startsWith('--')) {
      throw new Error(`unknown option ${arg}`);
    } else {
      rest.push(arg);
    }
  }
  return { perMessageDeflate: enabled ? opts : false, rest };
}

module.exports = { parseDeflateArgs };
