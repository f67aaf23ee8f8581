'use strict';
// Unlucky and hostile peers: a send stuck waiting for an ack when the socket is closed, a peer
// that floods a socket nobody reads, a peer announcing a frame over the limit.
const test = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const { ipcez, sockPath, within, child } = require('./helpers');

/** A raw Unix socket server (a custom peer that never acks); resolves with [server, path]. */
async function rawServer(onConnection) {
  const p = sockPath('raw');
  const server = net.createServer(onConnection);
  await new Promise((resolve) => server.listen(p, resolve));
  return [server, p];
}

test('close() during a send waiting for its ack rejects that send with ConnectionLost, at once', async () => {
  const peers = [];
  const [server, p] = await rawServer((c) => { peers.push(c); c.resume(); });
  const sock = await ipcez.connect(p, { ackTimeout: 30000 });
  const pending = sock.send('never acked');
  await new Promise((r) => setTimeout(r, 50));
  const t = Date.now();
  sock.close();
  await assert.rejects(within(2000, pending, 'the pending send'), ipcez.ConnectionLost);
  assert.ok(Date.now() - t < 2000);
  peers.forEach((c) => c.destroy());
  server.close();
});

test('a peer that floods a socket nobody reads: memory stays bounded', async (t) => {
  const p = sockPath('flood');
  const listener = await ipcez.listen(p, { ackTimeout: 200 });
  // 256 MiB of 64 KiB frames from another process, written as fast as the socket takes them.
  const flooder = child(process.execPath, ['-e', `
    const c = require('net').connect(${JSON.stringify(p)});
    const frame = Buffer.alloc(4 + 65536, 1); frame.writeUInt32BE(65536, 0);
    let sent = 0;
    const pump = () => { while (sent < 4096) { sent++; if (!c.write(frame)) return c.once('drain', pump); } };
    c.on('connect', () => { console.log('flooding'); pump(); });
    c.on('error', () => {});`]);
  const sock = await within(5000, listener.accept());
  assert.equal(await flooder.line(), 'flooding');
  const before = process.memoryUsage().rss;
  await new Promise((r) => setTimeout(r, 1500));
  const grown = process.memoryUsage().rss - before;
  t.diagnostic(`resident memory grew by ${(grown / 1048576).toFixed(0)} MiB`);
  // The core keeps at most 64 MiB queued per connection and Node holds one batch (1 MiB).
  assert.ok(grown < 160 * 1024 * 1024, `resident memory grew by ${(grown / 1048576).toFixed(0)} MiB`);
  // Everything queued is still there to read, in order and whole.
  const it = sock[Symbol.asyncIterator]();
  for (let i = 0; i < 10; i++) assert.equal((await within(5000, it.next())).value.length, 65536);
  flooder.kill();
  sock.close();
  listener.close();
});

test('a peer announcing a frame over 4 MiB: an IoError (EBADMSG) event, then close', async () => {
  const p = sockPath('huge');
  const listener = await ipcez.listen(p);
  const liar = child(process.execPath, ['-e', `
    const c = require('net').connect(${JSON.stringify(p)});
    c.on('connect', () => { const h = Buffer.alloc(4); h.writeUInt32BE(0xffffffff, 0); c.write(h); console.log('sent'); });
    c.on('close', () => process.exit(0));`]);
  const sock = await within(5000, listener.accept());
  const failed = new Promise((resolve) => sock.once('error', resolve));
  const closed = new Promise((resolve) => sock.once('close', resolve));
  const err = await within(5000, failed);
  assert.ok(err instanceof ipcez.IoError);
  assert.equal(err.code, 'EBADMSG');
  assert.equal(await within(5000, closed), err);
  // The liar sees the connection closed by ipcez.
  assert.deepEqual(await within(5000, liar.exited), { code: 0, signal: null });
  listener.close();
});

test('a failure is thrown by for await, and without an error listener nothing else throws', async () => {
  const p = sockPath('huge2');
  const listener = await ipcez.listen(p);
  const liar = child(process.execPath, ['-e', `
    const c = require('net').connect(${JSON.stringify(p)});
    c.on('connect', () => { const h = Buffer.alloc(4); h.writeUInt32BE(0xffffffff, 0); c.write(h); });
    c.on('close', () => process.exit(0));`]);
  const sock = await within(5000, listener.accept());
  const closed = new Promise((resolve) => sock.once('close', resolve));
  await assert.rejects(within(5000, (async () => { for await (const m of sock) assert.fail(`got ${m}`); })()),
    (e) => e instanceof ipcez.IoError && e.code === 'EBADMSG');
  assert.equal((await within(5000, closed)).code, 'EBADMSG'); // 'close' carries it too
  await within(5000, liar.exited);
  listener.close();
});
