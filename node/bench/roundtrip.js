'use strict';
// Round trips of one message at a time, from Node, against an echo peer in another process:
// the ipcez binding over a Unix socket vs Node's `net` module framed by hand, and the ipcez
// binding over WebSocket vs the `ws` package. All four run in one invocation, so compare the
// ratios, not the microseconds. Usage: node bench/roundtrip.js [--quick] [--size N]
const os = require('node:os');
const path = require('node:path');
const net = require('node:net');
const { spawn } = require('node:child_process');
const { performance } = require('node:perf_hooks');

process.env.target = 'local';
process.env.os = 'linux';
const ipcez = require('..');
const WebSocket = require('ws');

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const size = Number(args[args.indexOf('--size') + 1]) || 64;
const ROUNDS = quick ? 2000 : 20000;
const REPEATS = quick ? 3 : 5;

function server(kind, endpoint) {
  const proc = spawn(process.execPath, [path.join(__dirname, 'echo-server.js'), kind, endpoint], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    proc.stdout.once('data', (d) => resolve([proc, d.toString().trim().split(' ')[1]]));
    proc.once('exit', (code) => reject(new Error(`${kind} echo server exited (${code})`)));
  });
}

/** Microseconds per round trip: the median of REPEATS runs of ROUNDS round trips. */
async function measure(once) {
  for (let i = 0; i < ROUNDS / 10; i++) await once(); // warm up
  const runs = [];
  for (let r = 0; r < REPEATS; r++) {
    const t = performance.now();
    for (let i = 0; i < ROUNDS; i++) await once();
    runs.push(((performance.now() - t) * 1000) / ROUNDS);
  }
  return runs.sort((a, b) => a - b)[Math.floor(REPEATS / 2)];
}

async function viaIpcez(endpoint) {
  const socket = await ipcez.connect(endpoint);
  const it = socket[Symbol.asyncIterator]();
  const msg = Buffer.alloc(size, 1);
  const us = await measure(async () => { await socket.send(msg); await it.next(); });
  socket.close();
  return us;
}

async function viaNet(endpoint) {
  const socket = net.connect(endpoint);
  await new Promise((r) => socket.once('connect', r));
  socket.setNoDelay?.(true);
  const frame = Buffer.alloc(4 + size, 1);
  frame.writeUInt32BE(size, 0);
  let buf = Buffer.alloc(0);
  let waiting = null;
  socket.on('data', (chunk) => {
    buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
    if (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
      buf = buf.subarray(4 + buf.readUInt32BE(0));
      const w = waiting; waiting = null; w();
    }
  });
  const us = await measure(() => new Promise((r) => { waiting = r; socket.write(frame); }));
  socket.destroy();
  return us;
}

async function viaWs(url) {
  const ws = new WebSocket(url);
  await new Promise((r) => ws.once('open', r));
  let waiting = null;
  ws.on('message', () => { const w = waiting; waiting = null; w(); });
  const msg = Buffer.alloc(size, 1);
  const us = await measure(() => new Promise((r) => { waiting = r; ws.send(msg, { binary: true }); }));
  ws.close();
  return us;
}

async function main() {
  const sock = (name) => path.join(os.tmpdir(), `ipcez-bench-${process.pid}-${name}.sock`);
  const rows = [];
  for (const [label, kind, endpoint, client] of [
    ['ipcez, Unix socket', 'ipcez', sock('ipcez'), viaIpcez],
    ['net, Unix socket (framed by hand)', 'net', sock('net'), viaNet],
    ['ipcez, WebSocket', 'ipcez', 'ws://127.0.0.1:0/', viaIpcez],
    ['ws package, WebSocket', 'ws', '', viaWs],
  ]) {
    const [proc, address] = await server(kind, endpoint);
    try {
      rows.push([label, await client(address)]);
    } finally {
      proc.kill();
    }
  }
  console.log(`Node ${process.version}, ${size}-byte messages, ${ROUNDS} round trips x ${REPEATS} (median)`);
  for (const [label, us] of rows) console.log(`${label.padEnd(36)} ${us.toFixed(1).padStart(7)} us`);
  const [ipcUnix, netUnix, ipcWs, wsWs] = rows.map((r) => r[1]);
  console.log(`ipcez/net (Unix): ${(ipcUnix / netUnix).toFixed(2)}x   ipcez/ws (WebSocket): ${(ipcWs / wsWs).toFixed(2)}x`);
}

main().catch((e) => { console.error(e); process.exit(1); });
