'use strict';
// The `ws` package, the WebSocket library of the Node world, on the other end.
const test = require('node:test');
const assert = require('node:assert/strict');
const { WebSocket, WebSocketServer } = require('ws');
const { ipcez, within } = require('./helpers');

const SIZES = [0, 1, 64 * 1024, 4 * 1024 * 1024];

function wsServer(options = {}) {
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0, maxPayload: 8 << 20, ...options });
  return new Promise((resolve) => server.on('listening', () => resolve(server)));
}

test('ipcez connects to a ws server: echo of every size, subprotocol, close code and reason', async () => {
  const server = await wsServer({ handleProtocols: (offered) => (offered.has('v2') ? 'v2' : false) });
  server.on('connection', (ws) => {
    ws.on('message', (data) => ws.send(data, { binary: true }));
  });
  const url = `ws://127.0.0.1:${server.address().port}/`;
  const sock = await ipcez.connect(url, { subprotocols: ['v3', 'v2'] });
  assert.equal(sock.transport, 'websocket');
  assert.equal(sock.subprotocol, 'v2');
  const it = sock[Symbol.asyncIterator]();
  for (const size of SIZES) {
    const msg = Buffer.alloc(size, size % 199);
    await sock.send(msg);
    const { value } = await within(10000, it.next());
    assert.ok(value.equals(msg), `echo of ${size} bytes differs`);
  }
  const closed = new Promise((resolve) => sock.on('close', resolve));
  server.clients.forEach((ws) => ws.close(4001, 'done here'));
  const err = await within(5000, closed);
  assert.ok(err instanceof ipcez.ConnectionLost);
  assert.equal(err.closeCode, 4001);
  assert.equal(err.closeReason, 'done here');
  assert.match(err.message, /4001.*done here/);
  await assert.rejects(sock.send('late'), ipcez.ConnectionLost);
  server.close();
});

test('a ws client talks to an ipcez listener: text and binary, close codes both ways', async () => {
  const listener = await ipcez.listen('ws://127.0.0.1:0/chat');
  assert.match(listener.address, /^ws:\/\/127\.0\.0\.1:\d+\/chat$/);
  const client = new WebSocket(listener.address);
  const received = [];
  client.on('message', (data, isBinary) => received.push([Buffer.from(data), isBinary]));
  await within(5000, new Promise((resolve, reject) => { client.on('open', resolve); client.on('error', reject); }));
  const server = await within(5000, listener.accept());
  client.send('text arrives as its UTF-8 bytes');
  for (const size of SIZES) client.send(Buffer.alloc(size, 3));
  const it = server[Symbol.asyncIterator]();
  assert.equal((await within(5000, it.next())).value.toString(), 'text arrives as its UTF-8 bytes');
  for (const size of SIZES) {
    const { value } = await within(10000, it.next());
    assert.equal(value.length, size);
    await server.send(value);
  }
  await within(10000, (async () => { while (received.length < SIZES.length) await new Promise((r) => setTimeout(r, 5)); })());
  assert.deepEqual(received.map(([d, bin]) => [d.length, bin]), SIZES.map((s) => [s, true]));
  const clientClosed = new Promise((resolve) => client.on('close', (code) => resolve(code)));
  server.close();
  assert.equal(await within(5000, clientClosed), 1000);
  listener.close();
});

test('an oversize message from a ws client closes that connection with 1009', async () => {
  const listener = await ipcez.listen('ws://127.0.0.1:0/');
  const client = new WebSocket(listener.address, { maxPayload: 16 << 20 });
  await within(5000, new Promise((resolve) => client.on('open', resolve)));
  const server = await within(5000, listener.accept());
  const clientClosed = new Promise((resolve) => client.on('close', (code) => resolve(code)));
  // As with net and ws: a failure other than the connection ending is an 'error' event.
  const failed = new Promise((resolve) => server.on('error', resolve));
  const serverEnded = new Promise((resolve) => server.on('close', resolve));
  client.send(Buffer.alloc(4 * 1024 * 1024 + 1));
  assert.equal(await within(5000, clientClosed), 1009);
  const err = await within(5000, failed);
  assert.ok(err instanceof ipcez.IoError);
  assert.equal(err.code, 'EBADMSG');
  assert.match(err.message, /4 MiB limit/);
  assert.equal(await within(5000, serverEnded), err);
  listener.close();
});
