'use strict';
// The Error subclasses. Name, code and message come from the core (via the addon's
// ErrorInfo); this file only gives each its class.

class SocketError extends Error {
  constructor(message, info = {}) {
    super(message);
    this.name = new.target.name;
    this.code = info.code ?? 'ERR_IPCEZ';
    // Like Node's system errors: a negative errno beside the code (when the OS gave one).
    this.errno = info.errno != null ? -info.errno : undefined;
  }
}

/** An I/O failure: `code` is the errno name (ENOENT, ECONNREFUSED, EADDRINUSE, …). */
class IoError extends SocketError {}

/** The connection ended; from a WebSocket peer's close frame, `closeCode`/`closeReason`. */
class ConnectionLost extends IoError {
  constructor(message, info = {}) {
    super(message, { code: 'ECONNRESET', ...info });
    this.closeCode = info.closeCode ?? null;
    this.closeReason = info.closeReason ?? null;
  }
}

/** A message over 4 MiB: nothing was sent, the socket stays usable. */
class MessageTooLarge extends IoError {}

/** The WebSocket handshake or protocol failed. */
class WsError extends SocketError {}

/** This target/os pair is not supported by this build. */
class UnsupportedCombination extends SocketError {}

/** `target`/`os` are missing or invalid: `variable` names it, `guidance` says how to fix it. */
class DetectionError extends SocketError {
  constructor(message, info = {}) {
    super(message, info);
    this.variable = info.variable ?? null;
    this.guidance = info.guidance ?? null;
  }
}

/** The recipient did not acknowledge a local send within the ack timeout. */
class RecipientAckTimeout extends SocketError {}

const classes = {
  SocketError,
  IoError,
  ConnectionLost,
  MessageTooLarge,
  WsError,
  UnsupportedCombination,
  DetectionError,
  RecipientAckTimeout,
};

/** The addon's ErrorInfo as its Error subclass. */
function fromInfo(info) {
  // An option out of range (found by the addon): a TypeError, as Node's own APIs throw.
  if (info.code === 'ERR_INVALID_ARG_VALUE') return Object.assign(new TypeError(info.message), { code: info.code });
  const Class = classes[info.name] ?? SocketError;
  const err = new Class(info.message, info);
  Error.captureStackTrace?.(err, fromInfo);
  return err;
}

/** True for the addon's ErrorInfo objects (a failure given back, never thrown). */
function isInfo(value) {
  return value !== null && typeof value === 'object' && typeof value.code === 'string' &&
    typeof value.name === 'string' && typeof value.message === 'string';
}

/** `value`, or throws the error it is. */
function unwrap(value) {
  if (isInfo(value)) throw fromInfo(value);
  return value;
}

function invalidArg(message) {
  const err = new TypeError(message);
  err.code = 'ERR_INVALID_ARG_TYPE';
  return err;
}

module.exports = { ...classes, fromInfo, unwrap, invalidArg };
