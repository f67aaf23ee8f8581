'use strict';
const { Handle } = require('./handle');
const { unwrap, invalidArg } = require('./errors');

/** The bytes of a message: Buffer, any Uint8Array or ArrayBuffer view, or a UTF-8 string. */
function bytes(data) {
  if (typeof data === 'string') return Buffer.from(data, 'utf8');
  if (data instanceof Uint8Array) return data;
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  throw invalidArg(
    `send() takes a Buffer, a Uint8Array or a string, not ${data === null ? 'null' : typeof data}`,
  );
}

/**
 * One connection. Events: 'message' (a Buffer), then once 'error' (to its listeners: a failure
 * other than the connection ending) and 'close' (with the error that ended it). Async-iterable.
 * close() is idempotent; sends then fail with ConnectionLost.
 */
class Socket extends Handle {
  #native;

  constructor(native) {
    super(native, 'message', (msg) => msg);
    this.#native = native;
  }

  /** Sends one message (0 B to 4 MiB); on a local transport resolves once the peer read it. */
  async send(data) {
    const msg = bytes(data);
    const now = this.#native.trySend(msg); // WebSocket, nothing queued: done on this thread
    return unwrap(now === false ? await this.#native.send(msg) : now) ?? undefined;
  }

  get closed() { return this.#native.closed; }
  get transport() { return this.#native.transport; }
  get endpoint() { return this.#native.endpoint; }
  get subprotocol() { return this.#native.subprotocol ?? null; }
  get ackTimeout() { return this.#native.ackTimeout; }
}

module.exports = { Socket };
