'use strict';
// A real Python ipcez process on the other end of a Unix socket, acks both ways: each side's
// send completes only after the other side's reader has read the message. A stopped
// (SIGSTOP) process reads nothing, so the send must wait for it to be continued.
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { ipcez, sockPath, within, sleep, child, stop, nodeScript } = require('./helpers');

const PYTHON = process.env.PYTHON || 'python3';
const env = { ...process.env, PYTHONPATH: path.join(__dirname, '..', '..', 'python') };

function pythonIpcez() {
  try {
    execFileSync(PYTHON, ['-c', 'import ipcez; ipcez.which("ws://x")'], { env, stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
const skip = pythonIpcez() ? false
  : 'the Python package is not built in place (python build.py test builds it)';
if (skip && process.env.IPCEZ_REQUIRE_BINDINGS === '1') throw new Error(`cannot run: ${skip}`);

// Listens and answers each message with its SHA-256 (or, for "echo:…", the text back); on "stdin" it waits for a line on its
// stdin, then sends one message and prints how long its send took.
const PEER = `
import hashlib, sys, time, ipcez
with ipcez.listen(sys.argv[1]) as listener:
    print("ready", flush=True)
    sock = listener.accept(timeout=10)
    while True:
        msg = sock.recv(timeout=20)
        if msg == b"stdin":
            print("waiting", flush=True)
            sys.stdin.readline()
            t = time.monotonic()
            sock.send(b"from python")
            print("pushed %.3f" % (time.monotonic() - t), flush=True)
        elif msg == b"bye":
            break
        elif msg.startswith(b"echo:"):
            sock.send(b"py:" + msg[5:])
        else:
            sock.send(hashlib.sha256(msg).hexdigest().encode())
`;

test('a Python ipcez process and the Node binding, acks both ways', { skip }, async () => {
  const p = sockPath('py');
  const py = child(PYTHON, ['-c', PEER, p], { env });
  try {
    assert.equal(await py.line(30000), 'ready'); // Python's start-up under load
    const sock = await ipcez.connect(p, { ackTimeout: 5000 });
    const it = sock[Symbol.asyncIterator]();
    for (const size of [0, 1, 65536, 4 << 20]) {
      const msg = require('node:crypto').randomBytes(size);
      await sock.send(msg);
      const { value } = await within(10000, it.next());
      assert.equal(value.toString(), require('node:crypto').createHash('sha256').update(msg).digest('hex'));
    }

    // Node -> Python: while Python is stopped the send cannot be acked.
    await stop(py);
    let settled = false;
    const sending = sock.send('echo:while stopped').then(() => { settled = true; });
    await sleep(300);
    assert.equal(settled, false, 'the send resolved before Python read it');
    py.kill('SIGCONT');
    await within(5000, sending);
    assert.equal((await within(5000, it.next())).value.toString(), 'py:while stopped');

    sock.close();
  } finally {
    py.kill('SIGCONT');
    py.kill();
  }
});

test('Python sends to a Node process: its send waits for the Node reader', { skip }, async () => {
  const p = sockPath('py2');
  const py = child(PYTHON, ['-c', PEER, p], { env });
  assert.equal(await py.line(30000), 'ready'); // Python's start-up under load
  // The Node side in a process of its own, so that it can be stopped.
  const nodePeer = child(process.execPath, ['-e', nodeScript(
    `const s=await ipcez.connect(${JSON.stringify(p)});console.log('connected');` +
    `process.stdin.on('data',async(d)=>{await s.send(d.toString().trim());});` +
    `for await (const m of s) console.log('got '+m.toString());`)]);
  try {
    assert.equal(await nodePeer.line(), 'connected');
    nodePeer.stdin.write('echo:hello\n');
    assert.equal(await nodePeer.line(), 'got py:hello');
    nodePeer.stdin.write('stdin\n');
    assert.equal(await py.line(), 'waiting');
    await stop(nodePeer);
    py.stdin.write('go\n');
    // Python's send waits: the Node reader is stopped. Nothing may be printed yet.
    await assert.rejects(py.line(300), /did not finish/);
    nodePeer.kill('SIGCONT');
    const pushed = await py.line();
    assert.match(pushed, /^pushed /);
    assert.ok(Number(pushed.split(' ')[1]) >= 0.25, `Python's send returned early: ${pushed}`);
    assert.equal(await nodePeer.line(), 'got from python');
  } finally {
    nodePeer.kill('SIGCONT');
    nodePeer.kill();
    py.kill();
  }
});
