'use strict';
// What Socket (messages) and Listener (connections) share: items come from the addon in
// batches. One batch is read ahead while `queue` is empty, so the end of a connection is
// seen (and stops keeping the process alive) even when nobody reads; with items queued,
// nothing more is asked for, so the core's bounded queue is the backpressure. An item always
// lands somewhere: with a waiter, as an event, or in `queue` until someone asks, so an
// abandoned iteration or a cancelled wait loses nothing.
const { fromInfo } = require('./errors');

class Pump {
  /**
   * @param native the addon object (`start`, `pull`)
   * @param emitter the EventEmitter to emit `event` on
   * @param event 'message' or 'connection'
   * @param wrap turns one item of a batch into what users get
   */
  constructor(native, emitter, event, wrap) {
    this.native = native;
    this.emitter = emitter;
    this.event = event;
    this.wrap = wrap;
    this.queue = [];
    this.waiters = [];
    this.end = null; // the error that ended the stream, once known
    this.pulling = false;
    this.closeEmitted = false;
    native.start((batch) => this.onBatch(batch));
    emitter.on('newListener', (name) => {
      if (name === event || name === 'close') process.nextTick(() => this.flushToEvents());
    });
    this.pump();
  }

  /** Asks the addon for more unless a batch is on its way or waits in `queue`. */
  pump() {
    if (this.pulling || this.end || this.queue.length > 0) return;
    this.pulling = true;
    this.native.pull();
  }

  /** Learns the end now (after a local close): the core answers a pull at once. */
  settle() {
    if (this.end || this.pulling) return;
    this.pulling = true;
    this.native.pull();
  }

  onBatch({ items, error }) {
    this.pulling = false;
    for (const item of items) this.deliver(this.wrap(item));
    if (error) this.finish(fromInfo(error));
    this.pump();
  }

  deliver(item) {
    const waiter = this.waiters.shift();
    if (waiter) waiter.resolve(item);
    else if (this.emitter.listenerCount(this.event) > 0) this.emitter.emit(this.event, item);
    else this.queue.push(item);
  }

  flushToEvents() {
    while (this.queue.length > 0 && this.waiters.length === 0 &&
      this.emitter.listenerCount(this.event) > 0) {
      this.emitter.emit(this.event, this.shift());
    }
    if (this.end && this.queue.length === 0) this.emitClose();
    this.pump();
  }

  finish(err) {
    this.end = err;
    this.native.release();
    for (const waiter of this.waiters.splice(0)) waiter.reject(err);
    if (this.queue.length === 0) this.emitClose();
  }

  /** The end, handed to a take() or an iterator (which then throws it or ends). */
  handOutEnd() {
    this.emitClose();
    return this.end;
  }

  /**
   * 'close' once, with the error that ended the stream; before it 'error' for a failure
   * other than the connection ending, to 'error' listeners only: the same failure also
   * reaches iterators and 'close', so no process dies for want of a listener.
   */
  emitClose() {
    if (this.closeEmitted) return;
    this.closeEmitted = true;
    const err = this.end;
    process.nextTick(() => {
      if (err.name !== 'ConnectionLost' && this.emitter.listenerCount('error') > 0) {
        this.emitter.emit('error', err);
      }
      this.emitter.emit('close', err);
    });
  }

  /** The first queued item, reading ahead again once the queue is empty. */
  shift() {
    const item = this.queue.shift();
    this.pump();
    return item;
  }

  /** The next item; rejects with the error that ended the stream. */
  take() {
    if (this.queue.length > 0) return Promise.resolve(this.shift());
    if (this.end) return Promise.reject(this.handOutEnd());
    return new Promise((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      this.pump();
    });
  }

  /** An async iterator: ends at a plain connection loss or close, throws other errors. */
  iterator() {
    const pump = this;
    let done = false;
    const mine = new Set();
    return {
      next() {
        if (done) return Promise.resolve({ value: undefined, done: true });
        if (pump.queue.length > 0) return Promise.resolve({ value: pump.shift(), done: false });
        if (pump.end) return ended(pump.handOutEnd());
        return new Promise((resolve, reject) => {
          const waiter = {
            resolve: (value) => { mine.delete(waiter); resolve({ value, done: false }); },
            reject: (err) => { mine.delete(waiter); ended(err).then(resolve, reject); },
            cancel: () => resolve({ value: undefined, done: true }),
          };
          mine.add(waiter);
          pump.waiters.push(waiter);
          pump.pump();
        });
      },
      return() {
        // Stop waiting; whatever arrives later stays queued for the next reader.
        done = true;
        for (const waiter of mine) {
          pump.waiters.splice(pump.waiters.indexOf(waiter), 1);
          waiter.cancel();
        }
        mine.clear();
        return Promise.resolve({ value: undefined, done: true });
      },
      [Symbol.asyncIterator]() {
        return this;
      },
    };
    function ended(err) {
      done = true;
      if (err.name === 'ConnectionLost') return Promise.resolve({ value: undefined, done: true });
      return Promise.reject(err);
    }
  }
}

module.exports = { Pump };
