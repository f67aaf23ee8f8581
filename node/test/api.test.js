'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { ipcez, sockPath, pair, within, sleep } = require('./helpers');

const MiB = 1024 * 1024;

test('messages of 0 B, 1 B, 64 KiB and 4 MiB arrive whole, in both directions', async () => {
  const [client, server, listener] = await pair();
  for (const size of [0, 1, 64 * 1024, 4 * MiB]) {
    const msg = Buffer.alloc(size, size % 251);
    await client.send(msg);
    const it = server[Symbol.asyncIterator]();
    const got = await within(5000, it.next());
    assert.equal(got.value.length, size);
    assert.ok(got.value.equals(msg));
    await server.send(msg);
    const back = (await within(5000, client[Symbol.asyncIterator]().next())).value;
    assert.ok(Buffer.isBuffer(back) && back.equals(msg));
  }
  client.close(); server.close(); listener.close();
});

test('4 MiB + 1 is refused with MessageTooLarge and the socket stays usable', async () => {
  const [client, server, listener] = await pair();
  await assert.rejects(client.send(Buffer.alloc(4 * MiB + 1)), (e) => {
    assert.ok(e instanceof ipcez.MessageTooLarge && e instanceof ipcez.SocketError);
    assert.equal(e.code, 'ERR_IPCEZ_MESSAGE_TOO_LARGE');
    assert.match(e.message, /4194305 bytes.*4 MiB/);
    return true;
  });
  await client.send('still fine');
  const { value } = await within(5000, server[Symbol.asyncIterator]().next());
  assert.equal(value.toString(), 'still fine');
  client.close(); server.close(); listener.close();
});

test('strings, Uint8Arrays and other views are sent; anything else is a TypeError', async () => {
  const [client, server, listener] = await pair();
  await client.send('héllo');
  await client.send(new Uint8Array([1, 2, 3]));
  await client.send(new Uint16Array([0x0102]));
  await assert.rejects(client.send(42), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
  const it = server[Symbol.asyncIterator]();
  assert.equal((await it.next()).value.toString(), 'héllo');
  assert.deepEqual([...(await it.next()).value], [1, 2, 3]);
  assert.equal((await it.next()).value.length, 2);
  client.close(); server.close(); listener.close();
});

const N = 10000;

async function sendAll(socket) {
  for (let i = 0; i < N; i += 100) {
    await Promise.all(Array.from({ length: 100 }, (_, j) => socket.send(String(i + j))));
  }
}

test('for await delivers 10,000 messages in order', async () => {
  const [client, server, listener] = await pair();
  const sending = sendAll(client);
  let next = 0;
  for await (const msg of server) {
    assert.equal(msg.toString(), String(next));
    if (++next === N) break;
  }
  await sending;
  client.close(); server.close(); listener.close();
});

test("'message' events deliver 10,000 messages in order, then 'close'", async () => {
  const [client, server, listener] = await pair();
  const got = [];
  const closed = new Promise((resolve) => server.on('close', resolve));
  server.on('message', (m) => got.push(Number(m.toString())));
  await sendAll(client);
  client.close();
  const reason = await within(5000, closed, "'close'");
  assert.ok(reason instanceof ipcez.ConnectionLost);
  assert.equal(got.length, N);
  assert.ok(got.every((v, i) => v === i));
  server.close(); listener.close();
});

test('a cancelled or abandoned iteration loses nothing', async () => {
  const [client, server, listener] = await pair();
  for (const m of ['0', '1', '2']) await client.send(m); // acked: all three were read
  // A loop left with break after the first message.
  for await (const m of server) { assert.equal(m.toString(), '0'); break; }
  // An iteration given up while its next() waited: that next() ends, nothing is taken.
  const it = server[Symbol.asyncIterator]();
  assert.equal((await it.next()).value.toString(), '1');
  assert.equal((await it.next()).value.toString(), '2');
  const waiting = it.next();
  await it.return();
  assert.deepEqual(await waiting, { value: undefined, done: true });
  // A message that comes while nobody waits is kept for the next reader.
  await client.send('3');
  await sleep(20);
  const rest = [];
  await client.send('4');
  client.close();
  for await (const m of server) rest.push(m.toString());
  assert.deepEqual(rest, ['3', '4']);
  server.close(); listener.close();
});

test('close() is idempotent; sends afterwards reject with ConnectionLost', async () => {
  const [client, server, listener] = await pair();
  client.close();
  client.close();
  assert.equal(client.closed, true);
  await assert.rejects(client.send('x'), (e) => e instanceof ipcez.ConnectionLost && e.code === 'ECONNRESET');
  // The peer's iteration ends (a plain connection loss is the end, not an error).
  const rest = [];
  for await (const m of server) rest.push(m);
  assert.deepEqual(rest, []);
  server.close(); listener.close();
});

test('an unreachable path gives ENOENT', async () => {
  await assert.rejects(ipcez.connect(sockPath('missing')), (e) => {
    assert.ok(e instanceof ipcez.IoError);
    assert.equal(e.code, 'ENOENT');
    assert.match(e.message, /missing/);
    return true;
  });
});

test('a socket file nobody listens on gives ECONNREFUSED', async () => {
  const p = sockPath('dead');
  // Bound, never listening, left behind when its process exits (Node's own net unlinks).
  const bind = 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])';
  require('node:child_process').execFileSync('python3', ['-c', bind, p]);
  assert.ok(require('node:fs').existsSync(p));
  await assert.rejects(ipcez.connect(p), (e) => e instanceof ipcez.IoError && e.code === 'ECONNREFUSED');
});

test('DetectionError names the variable and says how to fix it', async () => {
  const saved = { target: process.env.target, IPCEZ_TARGET: process.env.IPCEZ_TARGET };
  delete process.env.target;
  delete process.env.IPCEZ_TARGET;
  try {
    await assert.rejects(ipcez.connect(sockPath()), (e) => {
      assert.ok(e instanceof ipcez.DetectionError);
      assert.equal(e.code, 'ERR_IPCEZ_DETECTION');
      assert.equal(e.variable, 'target');
      assert.match(e.guidance, /export target=local os=linux/);
      return true;
    });
    assert.throws(() => ipcez.which('/tmp/x.sock'), ipcez.DetectionError);
  } finally {
    process.env.target = saved.target;
  }
});

test('which and ackNames answer without connecting', () => {
  assert.deepEqual(ipcez.which('ws://example.com:9/x'), { transport: 'websocket', address: 'ws://example.com:9/x' });
  assert.equal(ipcez.which('/tmp/a.sock').transport, 'unix');
  const [ready, acked] = ipcez.ackNames('/tmp/a.sock');
  assert.match(ready, /data_ready$/);
  assert.match(acked, /data_acked$/);
  assert.throws(() => ipcez.which(''), (e) => e.code === 'EINVAL');
  assert.throws(() => ipcez.which(3), TypeError);
});

test('bad options are refused with a clear message', async () => {
  await assert.rejects(ipcez.connect(sockPath(), { ackTimeout: -1 }), /ackTimeout must be a finite number/);
  await assert.rejects(ipcez.connect(sockPath(), 5), TypeError);
  // Out of range or of the wrong type: a TypeError with Node's code, as documented.
  await assert.rejects(ipcez.connect(sockPath(), { ackTimeout: -1 }),
    { name: 'TypeError', code: 'ERR_INVALID_ARG_VALUE' });
  await assert.rejects(ipcez.connect(sockPath(), { ackTimeout: '5' }),
    { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE', message: /ackTimeout/ });
  await assert.rejects(ipcez.listen(sockPath(), { mode: '0o600' }),
    { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE', message: /mode/ });
  await assert.rejects(ipcez.listen(sockPath(), { maxConnections: -1 }),
    { name: 'TypeError', code: 'ERR_INVALID_ARG_VALUE', message: /maxConnections/ });
});

test('accept() after close rejects with ConnectionLost; iteration over the listener ends', async () => {
  const listener = await ipcez.listen(sockPath());
  listener.close();
  listener.close();
  await assert.rejects(listener.accept(), ipcez.ConnectionLost);
  const all = [];
  for await (const s of listener) all.push(s);
  assert.deepEqual(all, []);
});

test("a listener's 'connection' event and for await both hand out sockets", async () => {
  const p = sockPath();
  const listener = await ipcez.listen(p);
  const viaEvent = new Promise((resolve) => listener.once('connection', resolve));
  const c1 = await ipcez.connect(p);
  const s1 = await within(5000, viaEvent);
  assert.ok(s1 instanceof ipcez.Socket);
  const c2 = await ipcez.connect(p);
  for await (const s2 of listener) { assert.equal(s2.transport, 'unix'); s2.close(); break; }
  for (const s of [c1, c2, s1]) s.close();
  listener.close();
});
