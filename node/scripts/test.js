'use strict';
// What `python build.py test` runs: the npm dev packages when missing (npm ci), the addon
// (cargo), then `npm test`.
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const run = (cmd, args) => execFileSync(cmd, args, { cwd: root, stdio: 'inherit' });

try {
  if (!fs.existsSync(path.join(root, 'node_modules', 'ws'))) run(npm, ['ci', '--no-audit', '--no-fund']);
  run(process.execPath, [path.join(__dirname, 'build.js')]);
  run(npm, ['test']);
} catch (e) {
  process.exit(e.status || 1);
}
