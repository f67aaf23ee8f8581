'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { performance } = require('node:perf_hooks');
const { Worker } = require('node:worker_threads');
const { ipcez, sockPath, within, sleep, child, nodeScript } = require('./helpers');

function node(body) {
  return child(process.execPath, ['-e', nodeScript(body)]);
}

test('an open listener keeps the process alive; unref() lets it exit', async () => {
  const kept = node(`const l=await ipcez.listen(${JSON.stringify(sockPath())});console.log('up');`);
  assert.equal(await kept.line(), 'up');
  await sleep(300);
  assert.equal(kept.exitCode, null, 'a process with an open listener exited');
  kept.kill();
  const freed = node(`const l=await ipcez.listen(${JSON.stringify(sockPath())});l.unref();` +
    `const w=l.accept();console.log('up');`);
  assert.equal(await freed.line(), 'up');
  assert.deepEqual(await within(5000, freed.exited), { code: 0, signal: null });
});

test('an open socket keeps the process alive until closed or unref()d', async () => {
  const p = sockPath();
  const listener = await ipcez.listen(p);
  const conn = (tail) =>
    node(`const s=await ipcez.connect(${JSON.stringify(p)});s.on('message',()=>{});console.log('up');${tail}`);
  const kept = conn('');
  assert.equal(await kept.line(), 'up');
  await sleep(300);
  assert.equal(kept.exitCode, null, 'a process with an open socket exited');
  kept.kill();
  for (const tail of ['s.unref();', 's.close();', 's.unref();s.ref();s.unref();']) {
    const freed = conn(tail);
    assert.equal(await freed.line(), 'up');
    assert.deepEqual(await within(5000, freed.exited, tail), { code: 0, signal: null });
  }
  const refd = conn('s.unref();s.ref();');
  assert.equal(await refd.line(), 'up');
  await sleep(300);
  assert.equal(refd.exitCode, null, 'ref() after unref() did not keep the process alive');
  refd.kill();
  listener.close();
});

test('connection loss is seen within 50 ms of a SIGKILLed peer', async (t) => {
  const p = sockPath();
  const listener = await ipcez.listen(p);
  const peer = node(`const s=await ipcez.connect(${JSON.stringify(p)});await s.send('hi');console.log('up');`);
  const socket = await within(5000, listener.accept());
  assert.equal(await peer.line(), 'up');
  const lost = new Promise((resolve) => socket.on('close', (err) => resolve([performance.now(), err])));
  for await (const m of socket) { assert.equal(m.toString(), 'hi'); break; }
  const killed = performance.now();
  peer.kill('SIGKILL');
  const [at, err] = await within(5000, lost, 'seeing the loss');
  assert.ok(err instanceof ipcez.ConnectionLost);
  t.diagnostic(`loss seen after ${(at - killed).toFixed(1)} ms`);
  assert.ok(at - killed < 50, `the loss took ${(at - killed).toFixed(1)} ms to be seen`);
  listener.close();
});

const WORKER = path.join(__dirname, 'fixtures', 'worker.js');

test('the addon runs in several worker threads at once; ending a worker closes its sockets', async () => {
  const p = sockPath();
  const listener = await ipcez.listen(p);
  const workers = [1, 2, 3].map((id) => new Worker(WORKER, { workerData: { path: p, id } }));
  const sockets = [];
  const hellos = new Set();
  for (let i = 0; i < 3; i++) {
    const s = await within(5000, listener.accept());
    const { value } = await within(5000, s[Symbol.asyncIterator]().next());
    hellos.add(value.toString());
    sockets.push(s);
  }
  assert.deepEqual([...hellos].sort(), ['hello from 1', 'hello from 2', 'hello from 3']);
  const echoed = workers.map((w) => new Promise((resolve) => w.once('message', resolve)));
  await Promise.all(sockets.map((s, i) => s.send(`reply ${i}`)));
  assert.equal((await within(5000, Promise.all(echoed))).length, 3);
  const ends = sockets.map((s) => new Promise((resolve) => s.on('close', resolve)));
  await Promise.all(workers.map((w) => w.terminate()));
  for (const err of await within(5000, Promise.all(ends), 'the workers\' sockets closing')) {
    assert.ok(err instanceof ipcez.ConnectionLost);
  }
  listener.close();
});

test("a worker's listener closes with the worker", async () => {
  const p = sockPath();
  const worker = new Worker(WORKER, { workerData: { path: p, listen: true } });
  assert.equal(await within(5000, new Promise((r) => worker.once('message', r))), 'listening');
  const client = await ipcez.connect(p);
  const { value } = await within(5000, client[Symbol.asyncIterator]().next());
  assert.equal(value.toString(), 'from the worker');
  await worker.terminate();
  await assert.rejects(within(5000, ipcez.connect(p)), (e) => ['ENOENT', 'ECONNREFUSED'].includes(e.code));
  const rest = [];
  for await (const m of client) rest.push(m);
  assert.deepEqual(rest, []);
});
