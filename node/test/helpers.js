'use strict';
// Shared by the test files: fresh short socket paths, the local environment, child
// processes with bounded waits.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn } = require('node:child_process');

process.env.target = 'local';
process.env.os = 'linux';

const ipcez = require('..');

let dir;
/** A fresh socket path in a short temporary directory (Unix paths are limited to 108 bytes). */
function sockPath(name = 's') {
  dir ??= fs.mkdtempSync(path.join(os.tmpdir(), 'ipcez-node-'));
  return path.join(dir, `${name}-${process.pid}-${Math.random().toString(36).slice(2, 8)}.sock`);
}

/** A connected pair over a Unix socket: [client, server, listener]. */
async function pair(opts = {}) {
  const p = sockPath();
  const listener = await ipcez.listen(p, opts.listen);
  const [client, server] = await Promise.all([ipcez.connect(p, opts.connect), listener.accept()]);
  return [client, server, listener];
}

/** Rejects if `promise` takes longer than `ms` (so a test never hangs). */
function within(ms, promise, what = 'operation') {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A child process whose stdout lines can be awaited one by one. */
function child(cmd, args, options = {}) {
  const proc = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'inherit'], ...options });
  const lines = [];
  const waiting = [];
  let rest = '';
  proc.stdout.setEncoding('utf8');
  proc.stdout.on('data', (chunk) => {
    rest += chunk;
    let i;
    while ((i = rest.indexOf('\n')) >= 0) {
      const line = rest.slice(0, i);
      rest = rest.slice(i + 1);
      const w = waiting.shift();
      if (w) w(line);
      else lines.push(line);
    }
  });
  proc.line = (ms = 10000) => {
    if (lines.length) return Promise.resolve(lines.shift());
    return new Promise((resolve, reject) => {
      const w = (line) => { clearTimeout(timer); resolve(line); };
      const timer = setTimeout(() => {
        waiting.splice(waiting.indexOf(w), 1);
        reject(new Error(`a line from ${path.basename(cmd)} did not finish within ${ms} ms`));
      }, ms);
      waiting.push(w);
    });
  };
  proc.exited = new Promise((r) => proc.on('exit', (code, signal) => r({ code, signal })));
  return proc;
}

/** SIGSTOPs `proc` and waits until every thread of it has stopped (a signal is delivered
 *  asynchronously: a thread may still run for a moment after kill() returns). */
async function stop(proc) {
  proc.kill('SIGSTOP');
  const dir = `/proc/${proc.pid}/task`;
  const stopped = () => fs.readdirSync(dir).every((t) => {
    const stat = fs.readFileSync(`${dir}/${t}/stat`, 'utf8');
    return /^[TtX]$/.test(stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3));
  });
  for (let i = 0; i < 2000 && !stopped(); i++) await sleep(1);
  if (!stopped()) throw new Error(`process ${proc.pid} did not stop`);
}

/** A script for `node -e` that uses this package. */
function nodeScript(body) {
  return `process.env.target='local';process.env.os='linux';` +
    `const ipcez=require(${JSON.stringify(path.join(__dirname, '..'))});(async()=>{${body}})()` +
    `.catch((e)=>{console.error(e);process.exit(3)});`;
}

module.exports = { ipcez, sockPath, pair, within, sleep, child, stop, nodeScript };
