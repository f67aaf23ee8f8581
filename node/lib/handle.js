'use strict';
// What Socket and Listener share: an addon object that closes and keeps the process alive,
// and a Pump that hands out what it delivers (iteration here; `take` for Listener.accept).
const { EventEmitter } = require('node:events');
const { Pump } = require('./pump');

const pumps = new WeakMap();

class Handle extends EventEmitter {
  #native;

  /** `event` names what `native` delivers ('message', 'connection'); `wrap` shapes each. */
  constructor(native, event, wrap) {
    super();
    this.#native = native;
    pumps.set(this, new Pump(native, this, event, wrap));
  }

  /** Closes (idempotent). */
  close() {
    this.#native.close();
    pumps.get(this).settle();
  }

  /** Keeps the process alive while open (the default), like net.Socket. */
  ref() {
    this.#native.setRef(true);
    return this;
  }

  /** Lets the process exit even though this is open. */
  unref() {
    this.#native.setRef(false);
    return this;
  }

  [Symbol.asyncIterator]() {
    return pumps.get(this).iterator();
  }
}

/** The next item `handle` delivers; rejects with the error that ended it. */
function take(handle) {
  return pumps.get(handle).take();
}

module.exports = { Handle, take };
