'use strict';
const { EventEmitter } = require('node:events');
const { Pump } = require('./pump');
const { Socket } = require('./socket');

/**
 * Accepts connections: `accept()`, `for await (const socket of listener)`, or the
 * 'connection' event. 'close' once it is closed and nothing is left to take.
 */
class Listener extends EventEmitter {
  #native;
  #pump;

  constructor(native) {
    super();
    this.#native = native;
    this.#pump = new Pump(native, this, 'connection', (s) => new Socket(s));
  }

  /** The next connection; after close() rejects with ConnectionLost. */
  accept() {
    return this.#pump.take();
  }

  /** Stops listening (idempotent); accepted sockets stay open. */
  close() {
    this.#native.close();
    this.#pump.settle();
  }

  ref() {
    this.#native.setRef(true);
    return this;
  }

  unref() {
    this.#native.setRef(false);
    return this;
  }

  /** The socket path, pipe, or ws:// URL (with the real port when 0 was asked). */
  get address() { return this.#native.address; }
  get transport() { return this.#native.transport; }

  [Symbol.asyncIterator]() {
    return this.#pump.iterator();
  }
}

module.exports = { Listener };
