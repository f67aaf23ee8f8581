'use strict';
// Finds the addon built for this platform and says clearly which file it looked for.
const fs = require('node:fs');
const path = require('node:path');

function libc() {
  if (process.platform !== 'linux') return '';
  const header = process.report?.getReport?.().header;
  return header && header.glibcVersionRuntime ? '-gnu' : '-musl';
}

const name = `ipcez.${process.platform}-${process.arch}${libc()}.node`;
const file = path.join(__dirname, '..', name);
if (!fs.existsSync(file)) {
  throw new Error(
    `ipcez: no native addon for this platform: looked for ${file}. ` +
      'Install a package built for this platform, or build one with `npm run build` ' +
      'in the package source (needs Rust).',
  );
}
module.exports = require(file);
