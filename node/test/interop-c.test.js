'use strict';
// The custom peer of the protocol documentation, in C (tests/custom_peer.c): plain frames and
// the endpoint's two named semaphores, no ipcez. And a peer that never acks.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const net = require('node:net');
const { execFileSync } = require('node:child_process');
const { ipcez, sockPath, within, child } = require('./helpers');

const SOURCE = path.join(__dirname, '..', '..', 'tests', 'custom_peer.c');
const ROUNDS = 20;

function build() {
  const exe = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'ipcez-cpeer-')), 'peer');
  try {
    execFileSync('gcc', ['-O1', '-Wall', '-Werror', '-pthread', '-o', exe, SOURCE], { stdio: 'inherit' });
  } catch (e) {
    if (e.code === 'ENOENT') return null;
    throw e;
  }
  return exe;
}
const peerExe = build();
const skip = peerExe ? false : 'gcc is not installed';
if (skip && process.env.IPCEZ_REQUIRE_BINDINGS === '1') throw new Error(`cannot run: ${skip}`);

test('the C custom listener and a Node ipcez client', { skip }, async () => {
  const p = sockPath('c');
  const [ready, acked] = ipcez.ackNames(p);
  const peer = child(peerExe, ['listen', p, ready, acked, String(ROUNDS)]);
  assert.equal(await peer.line(), 'ready');
  const sock = await ipcez.connect(p, { ackTimeout: 5000 });
  for (let i = 0; i < ROUNDS; i++) {
    // Each send resolves on the C peer's sem_post of data_acked.
    await sock.send(i === 0 ? Buffer.alloc(1 << 20, 'c') : `c${i}`);
  }
  const it = sock[Symbol.asyncIterator]();
  for (let i = 0; i < ROUNDS; i++) {
    assert.equal((await within(5000, it.next())).value.toString(), `l${i}`);
  }
  assert.deepEqual(await within(10000, peer.exited), { code: 0, signal: null });
  assert.equal(await peer.line(), `got ${1 << 20}`);
  assert.equal(await peer.line(), 'got 2');
  sock.close();
});

test('the C custom client and a Node ipcez listener', { skip }, async () => {
  const p = sockPath('c');
  const listener = await ipcez.listen(p, { ackTimeout: 5000 });
  const [ready, acked] = ipcez.ackNames(p);
  const peer = child(peerExe, ['connect', p, ready, acked, String(ROUNDS)]);
  const sock = await within(10000, listener.accept());
  const it = sock[Symbol.asyncIterator]();
  assert.equal((await within(5000, it.next())).value.length, 1 << 20);
  for (let i = 1; i < ROUNDS; i++) {
    assert.equal((await within(5000, it.next())).value.toString(), `c${i}`);
  }
  for (let i = 0; i < ROUNDS; i++) await sock.send(`l${i}`); // acked by the C peer
  assert.deepEqual(await within(10000, peer.exited), { code: 0, signal: null });
  for (let i = 0; i < ROUNDS; i++) assert.equal(await peer.line(), `got l${i}`);
  assert.equal(await peer.line(), 'ok');
  listener.close();
});

test('a peer that reads but never acks: RecipientAckTimeout, and the socket stays usable', async () => {
  const p = sockPath('noack');
  let raw;
  const got = [];
  const server = net.createServer((c) => { raw = c; c.on('data', (d) => got.push(d)); });
  await new Promise((resolve) => server.listen(p, resolve));
  const sock = await ipcez.connect(p, { ackTimeout: 200 });
  await assert.rejects(within(5000, sock.send('unacked')), (e) => {
    assert.ok(e instanceof ipcez.RecipientAckTimeout);
    assert.equal(e.code, 'ERR_IPCEZ_RECIPIENT_ACK_TIMEOUT');
    assert.match(e.message, /did not acknowledge/);
    return true;
  });
  // The frame did arrive whole: 4-byte big-endian length, then the bytes.
  const frame = Buffer.concat(got);
  assert.equal(frame.readUInt32BE(0), 7);
  assert.equal(frame.subarray(4, 11).toString(), 'unacked');
  // The peer answers with a frame of its own: it arrives.
  const reply = Buffer.from('\u0000\u0000\u0000\u0002ok', 'latin1');
  raw.write(reply);
  assert.equal((await within(5000, sock[Symbol.asyncIterator]().next())).value.toString(), 'ok');
  sock.close();
  raw.destroy();
  server.close();
});
