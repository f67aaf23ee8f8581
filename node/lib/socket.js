'use strict';
const { EventEmitter } = require('node:events');
const { Pump } = require('./pump');
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
 */
class Socket extends EventEmitter {
  #native;
  #pump;

  constructor(native) {
    super();
    this.#native = native;
    this.#pump = new Pump(native, this, 'message', (msg) => msg);
  }

  /** Sends one message (0 B to 4 MiB); on a local transport resolves once the peer read it. */
  async send(data) {
    const msg = bytes(data);
    const now = this.#native.trySend(msg); // WebSocket, nothing queued: done on this thread
    return unwrap(now === false ? await this.#native.send(msg) : now) ?? undefined;
  }

  /** Closes the connection; idempotent. Sends then fail with ConnectionLost. */
  close() {
    this.#native.close();
    this.#pump.settle();
  }

  /** Keeps the process alive while open (the default), like net.Socket. */
  ref() {
    this.#native.setRef(true);
    return this;
  }

  /** Lets the process exit even though this socket is open. */
  unref() {
    this.#native.setRef(false);
    return this;
  }

  get closed() { return this.#native.closed; }
  get transport() { return this.#native.transport; }
  get endpoint() { return this.#native.endpoint; }
  get subprotocol() { return this.#native.subprotocol ?? null; }
  get ackTimeout() { return this.#native.ackTimeout; }

  [Symbol.asyncIterator]() {
    return this.#pump.iterator();
  }
}

module.exports = { Socket };
