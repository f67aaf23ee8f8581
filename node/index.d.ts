// Types of the ipcez package. Checked against the JavaScript in the tests
// (test/types.test.js) and with `tsc --strict` (test/types/usage.ts).
/// <reference types="node" />
import { EventEmitter } from 'node:events';

/** Messages are 0 B to this many bytes (4 MiB). */
export declare const MAX_MESSAGE_LEN: number;

export interface ConnectOptions {
  /** How long a local send waits for the recipient's ack, in milliseconds (default 5000). */
  ackTimeout?: number;
  /** WebSocket subprotocols to offer, in order of preference. */
  subprotocols?: string[];
}

export interface ListenOptions {
  /** Permission bits of a Unix socket file (default 0o600). */
  mode?: number;
  /** PEM certificate chain, for wss://. */
  certfile?: string;
  /** PEM private key, for wss://. */
  keyfile?: string;
  /** The ack timeout of accepted sockets, in milliseconds (default 5000). */
  ackTimeout?: number;
  /** Open connections at most, accepted plus waiting (default 1024). */
  maxConnections?: number;
  /** WebSocket Origin values allowed besides the listener's own ('*' for any). */
  origins?: string[];
  /** WebSocket subprotocols this listener speaks. */
  subprotocols?: string[];
}

export type Transport = 'unix' | 'pipe' | 'websocket';

export interface Resolution {
  transport: Transport;
  address: string;
}

/** Connects to a socket path, a pipe name, or a ws:// / wss:// URL. */
export declare function connect(endpoint: string, options?: ConnectOptions): Promise<Socket>;
/** Listens on an endpoint resolved like connect's. */
export declare function listen(endpoint: string, options?: ListenOptions): Promise<Listener>;
/** How connect would reach the endpoint, without connecting. */
export declare function which(endpoint: string): Resolution;
/** The [dataReady, dataAcked] names of a local endpoint's ack objects (custom peers). */
export declare function ackNames(endpoint: string): [string, string];

export declare class Socket extends EventEmitter implements AsyncIterable<Buffer> {
  private constructor();
  /** Sends one message; on a local transport resolves once the peer has read it. */
  send(data: Uint8Array | ArrayBufferView | ArrayBuffer | string): Promise<void>;
  /** Closes the connection (idempotent); sends then reject with ConnectionLost. */
  close(): void;
  ref(): this;
  unref(): this;
  readonly closed: boolean;
  readonly transport: Transport;
  readonly endpoint: string;
  readonly subprotocol: string | null;
  /** Milliseconds. */
  readonly ackTimeout: number;
  [Symbol.asyncIterator](): AsyncIterator<Buffer>;

  on(event: 'message', listener: (message: Buffer) => void): this;
  on(event: 'error', listener: (error: SocketError) => void): this;
  on(event: 'close', listener: (reason: SocketError) => void): this;
  once(event: 'message', listener: (message: Buffer) => void): this;
  once(event: 'error', listener: (error: SocketError) => void): this;
  once(event: 'close', listener: (reason: SocketError) => void): this;
}

export declare class Listener extends EventEmitter implements AsyncIterable<Socket> {
  private constructor();
  /** The next connection; rejects with ConnectionLost after close(). */
  accept(): Promise<Socket>;
  /** Stops listening (idempotent); accepted sockets stay open. */
  close(): void;
  ref(): this;
  unref(): this;
  /** The socket path, pipe, or ws:// URL (with the real port when 0 was asked). */
  readonly address: string;
  readonly transport: Transport;
  [Symbol.asyncIterator](): AsyncIterator<Socket>;

  on(event: 'connection', listener: (socket: Socket) => void): this;
  on(event: 'error', listener: (error: SocketError) => void): this;
  on(event: 'close', listener: (reason: SocketError) => void): this;
  once(event: 'connection', listener: (socket: Socket) => void): this;
  once(event: 'error', listener: (error: SocketError) => void): this;
  once(event: 'close', listener: (reason: SocketError) => void): this;
}

export declare class SocketError extends Error {
  /** ENOENT, ECONNREFUSED, …, or ERR_IPCEZ_…. */
  code: string;
  /** The negative OS error number, when the OS gave one. */
  errno?: number;
}
export declare class IoError extends SocketError {}
export declare class ConnectionLost extends IoError {
  /** The WebSocket close code the peer sent, else null. */
  closeCode: number | null;
  closeReason: string | null;
}
export declare class MessageTooLarge extends IoError {}
export declare class WsError extends SocketError {}
export declare class UnsupportedCombination extends SocketError {}
export declare class DetectionError extends SocketError {
  /** The environment variable at fault (target, os, IPCEZ_TARGET, IPCEZ_OS). */
  variable: string | null;
  /** How to fix it. */
  guidance: string | null;
}
export declare class RecipientAckTimeout extends SocketError {}
