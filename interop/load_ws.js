// Locate the pinned `ws` package for the Node peers.
//
// interop/install.sh puts it in ${TETHER_INTEROP_DIR:-<repo>/target/interop}/node,
// which is not on Node's lookup path for scripts in interop/, so try there
// first and fall back to the normal resolution (NODE_PATH, node_modules dirs).
'use strict';

const path = require('path');

const dirs = [
  process.env.TETHER_INTEROP_DIR,
  path.join(__dirname, '..', 'target', 'interop'),
].filter(Boolean);

function load() {
  for (const dir of dirs) {
    try {
      return require(path.join(dir, 'node', 'node_modules', 'ws'));
    } catch (err) {
      if (err.code !== 'MODULE_NOT_FOUND') throw err;
    }
  }
  try {
    return require('ws');
  } catch (err) {
    console.error(`cannot find the 'ws' package (looked in ${dirs.join(', ')}); ` +
      'run interop/install.sh or set TETHER_INTEROP_DIR');
    throw err;
  }
}

module.exports = load();
