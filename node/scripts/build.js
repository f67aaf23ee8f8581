'use strict';
// Builds the addon with cargo and puts it beside index.js under the loader's name.
// Needs Rust; installing the packed tarball does not run this.
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const manifest = path.join(root, '..', 'rust', 'Cargo.toml');
const args = ['build', '--release', '-p', 'ipcez-node', '--manifest-path', manifest];
if (process.env.CI) args.push('--locked');
execFileSync(process.env.CARGO || 'cargo', args, { stdio: 'inherit' });

const target = process.env.CARGO_TARGET_DIR || path.join(root, '..', 'rust', 'target');
const built = {
  linux: 'libipcez_node.so',
  darwin: 'libipcez_node.dylib',
  win32: 'ipcez_node.dll',
}[process.platform];
if (!built) throw new Error(`ipcez: building on ${process.platform} is not supported`);
const header = process.report?.getReport?.().header;
const libc = process.platform !== 'linux' ? '' : header?.glibcVersionRuntime ? '-gnu' : '-musl';
const dest = path.join(root, `ipcez.${process.platform}-${process.arch}${libc}.node`);
fs.copyFileSync(path.join(target, 'release', built), dest);
console.error(`ipcez: built ${path.basename(dest)}`);
