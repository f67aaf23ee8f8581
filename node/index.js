'use strict';
// ipcez for Node.js: connect(endpoint) picks a Unix socket, a named pipe or a WebSocket.
const native = require('./lib/native');
const errors = require('./lib/errors');
const { Socket } = require('./lib/socket');
const { Listener } = require('./lib/listener');

function options(opts, name) {
  if (opts === undefined || opts === null) return undefined;
  if (typeof opts !== 'object') throw errors.invalidArg(`${name}'s options must be an object`);
  return opts;
}

function endpointOf(endpoint, name) {
  if (typeof endpoint !== 'string') {
    throw errors.invalidArg(`${name}() takes the endpoint as a string, not ${typeof endpoint}`);
  }
  return endpoint;
}

/** `native[name](...args)`, an option of the wrong type (the addon's conversion) a TypeError. */
function call(name, ...args) {
  try {
    return native[name](...args);
  } catch (e) {
    if (/Expected$/.test(e?.code)) throw errors.invalidArg(`${name}(): ${e.message}`);
    throw e;
  }
}

/** Connects to `endpoint`: a socket path, a pipe name, or a ws:// / wss:// URL. */
async function connect(endpoint, opts) {
  const ep = endpointOf(endpoint, 'connect');
  return new Socket(errors.unwrap(await call('connect', ep, options(opts, 'connect'))));
}

/** Listens on `endpoint` (resolved like connect's). */
async function listen(endpoint, opts) {
  const ep = endpointOf(endpoint, 'listen');
  const o = options(opts, 'listen');
  // The addon takes these as u32, which would silently wrap -1 to 4294967295.
  for (const key of ['mode', 'maxConnections']) {
    const v = o?.[key];
    if (typeof v === 'number' && !(Number.isInteger(v) && v >= 0 && v <= 0xffffffff)) {
      throw Object.assign(new TypeError(`listen(): ${key} must be a whole number, 0 or more (got ${v})`),
        { code: 'ERR_INVALID_ARG_VALUE' });
    }
  }
  return new Listener(errors.unwrap(await call('listen', ep, o)));
}

/** How connect would reach `endpoint`: `{ transport, address }`, without connecting. */
function which(endpoint) {
  return errors.unwrap(native.which(endpointOf(endpoint, 'which')));
}

/** The `[dataReady, dataAcked]` names of a local endpoint's ack objects (custom peers). */
function ackNames(endpoint) {
  return errors.unwrap(native.ackNames(endpointOf(endpoint, 'ackNames')));
}

module.exports = {
  connect,
  listen,
  which,
  ackNames,
  Socket,
  Listener,
  SocketError: errors.SocketError,
  IoError: errors.IoError,
  ConnectionLost: errors.ConnectionLost,
  MessageTooLarge: errors.MessageTooLarge,
  WsError: errors.WsError,
  UnsupportedCombination: errors.UnsupportedCombination,
  DetectionError: errors.DetectionError,
  RecipientAckTimeout: errors.RecipientAckTimeout,
  MAX_MESSAGE_LEN: 4 * 1024 * 1024,
};
