// The README's and docs/node.md's examples, type-checked with `tsc --strict --noEmit`
// against the shipped index.d.ts (test/types.test.js runs it).
import {
  connect, listen, which, ackNames, Socket, Listener, ConnectionLost, DetectionError,
  RecipientAckTimeout, MessageTooLarge, SocketError, MAX_MESSAGE_LEN,
} from 'ipcez';

async function readme(): Promise<void> {
  const server = await listen('/tmp/app.sock');
  const client = await connect('/tmp/app.sock', { ackTimeout: 2000 });
  await client.send('hello'); // resolves once the server has read it
  for await (const socket of server) {
    for await (const msg of socket) console.log(msg.toString());
  }
}

async function events(socket: Socket, listener: Listener): Promise<void> {
  socket.on('message', (msg: Buffer) => console.log(msg.length));
  socket.on('error', (err: SocketError) => console.error(err.code));
  socket.on('close', (reason: SocketError) => {
    if (reason instanceof ConnectionLost && reason.closeCode !== null) {
      console.log(reason.closeCode, reason.closeReason);
    }
  });
  listener.on('connection', (s: Socket) => s.unref());
  const next: Socket = await listener.accept();
  next.ref().unref();
  const address: string = listener.address;
  const transport: 'unix' | 'pipe' | 'websocket' = next.transport;
  console.log(address, transport, next.endpoint, next.subprotocol, next.ackTimeout, next.closed);
  next.close();
  listener.close();
}

async function websocket(): Promise<void> {
  const server = await listen('ws://127.0.0.1:0/chat', { origins: ['*'], subprotocols: ['v1'], maxConnections: 10 });
  const client = await connect(server.address, { subprotocols: ['v1'] });
  await client.send(new Uint8Array([1, 2, 3]));
  await client.send(Buffer.alloc(MAX_MESSAGE_LEN));
}

function errors(e: unknown): string {
  if (e instanceof RecipientAckTimeout) return e.code;
  if (e instanceof DetectionError) return `${e.variable}: ${e.guidance}`;
  if (e instanceof MessageTooLarge) return e.message;
  return String(e);
}

const r = which('ws://example.com/');
const names: [string, string] = ackNames('/tmp/app.sock');
console.log(r.transport, r.address, names, readme, events, websocket, errors);
