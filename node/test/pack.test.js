'use strict';
// The package as users get it: `npm pack` builds the addon (prepack) into a tarball that
// installs offline in a fresh directory, where the example then runs without Rust.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');

const root = path.join(__dirname, '..');
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';

test('npm pack, then npm install of the tarball offline, then the example runs', { timeout: 600000 }, () => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'ipcez-pack-'));
  const packed = JSON.parse(execFileSync(npm, ['pack', '--json', '--pack-destination', out], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }));
  const files = packed[0].files.map((f) => f.path).sort();
  assert.ok(files.some((f) => /^ipcez\..+\.node$/.test(f)), `no addon in the tarball: ${files}`);
  for (const f of ['index.js', 'index.d.ts', 'lib/native.js', 'package.json']) assert.ok(files.includes(f), f);
  assert.ok(!files.some((f) => f.startsWith('test/') || f.startsWith('scripts/')), files.join(' '));

  const app = fs.mkdtempSync(path.join(os.tmpdir(), 'ipcez-app-'));
  fs.writeFileSync(path.join(app, 'package.json'), '{"name":"app","version":"1.0.0","private":true}');
  execFileSync(npm, ['install', '--offline', '--no-audit', '--no-fund', path.join(out, packed[0].filename)], { cwd: app, stdio: 'inherit' });
  fs.copyFileSync(path.join(root, 'example.js'), path.join(app, 'example.js'));
  // Only node's own directory on PATH: no cargo, no rustc.
  const env = { ...process.env, PATH: path.dirname(process.execPath) };
  if (fs.existsSync(path.join(path.dirname(process.execPath), 'cargo'))) delete env.PATH;
  const output = execFileSync(process.execPath, ['example.js'], { cwd: app, env, encoding: 'utf8', timeout: 30000 });
  assert.equal(output, 'server got ping\nclient got pong to ping\n');
});
