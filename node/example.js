'use strict';
// A listener and a client in one script: run it where the package is installed
// (`npm install ./ipcez-0.1.0.tgz`, then `node example.js`).
const os = require('node:os');
const path = require('node:path');
const ipcez = require('ipcez');

process.env.target ??= 'local';
process.env.os ??= os.platform() === 'win32' ? 'windows' : 'linux';

async function main() {
  const endpoint = path.join(os.tmpdir(), `ipcez-example-${process.pid}.sock`);
  const server = await ipcez.listen(endpoint);
  const client = await ipcez.connect(endpoint);
  const peer = await server.accept();
  await client.send('ping'); // resolves once the server side has read it
  for await (const msg of peer) {
    console.log(`server got ${msg}`);
    await peer.send(`pong to ${msg}`);
    break;
  }
  for await (const reply of client) {
    console.log(`client got ${reply}`);
    break;
  }
  client.close();
  peer.close();
  server.close();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
