'use strict';
// The echo peer of roundtrip.js, in a process of its own: `node echo-server.js KIND ENDPOINT`.
// Prints "ready ADDRESS" once it listens.
const net = require('node:net');
const ipcez = require('..');

const [kind, endpoint] = process.argv.slice(2);

async function main() {
  if (kind === 'ipcez') {
    const server = await ipcez.listen(endpoint);
    console.log(`ready ${server.address}`);
    for await (const socket of server) {
      (async () => { for await (const msg of socket) await socket.send(msg); })();
    }
  } else if (kind === 'net') {
    // Frames by hand: a 4-byte big-endian length, then the bytes (what ipcez puts on the wire).
    const server = net.createServer((c) => {
      let buf = Buffer.alloc(0);
      c.on('data', (chunk) => {
        buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
        while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
          const n = 4 + buf.readUInt32BE(0);
          c.write(buf.subarray(0, n));
          buf = buf.subarray(n);
        }
      });
    });
    server.listen(endpoint, () => console.log(`ready ${endpoint}`));
  } else if (kind === 'ws') {
    const { WebSocketServer } = require('ws');
    const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    server.on('connection', (ws) => ws.on('message', (m) => ws.send(m, { binary: true })));
    server.on('listening', () => console.log(`ready ws://127.0.0.1:${server.address().port}/`));
  }
}
main();
