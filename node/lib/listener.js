'use strict';
const { Handle, take } = require('./handle');
const { Socket } = require('./socket');

/**
 * Accepts connections: `accept()`, `for await (const socket of listener)`, or the
 * 'connection' event. close() stops accepting (idempotent); accepted sockets stay open.
 */
class Listener extends Handle {
  #native;

  constructor(native) {
    super(native, 'connection', (s) => new Socket(s));
    this.#native = native;
  }

  /** The next connection; after close() rejects with ConnectionLost. */
  accept() {
    return take(this);
  }

  /** The socket path, pipe, or ws:// URL (with the real port when 0 was asked). */
  get address() { return this.#native.address; }
  get transport() { return this.#native.transport; }
}

module.exports = { Listener };
