//! # ipcez
//!
//! Inter-process messaging with one call: [`socket_init`] picks a Unix domain socket or a
//! Windows named pipe when the peer is on this machine, or a WebSocket when the endpoint is
//! a `ws://` / `wss://` URL, so the same program runs unchanged in every deployment.
//!
//! ```no_run
//! # async fn demo() -> Result<(), ipcez::SocketError> {
//! // With `target=local os=linux` in the environment:
//! let socket = ipcez::socket_init("/tmp/ipcez.sock").await?;
//! socket.send_message(b"hello").await?; // waits for the recipient's ack
//! let reply = socket.recv().await?;
//! socket.disconnect().await;
//! # Ok(()) }
//! ```
//!
//! * Messages are 0 to 4 MiB, delivered whole, in order, once.
//! * Local sends wait for the recipient's ack: between two ipcez endpoints on Linux a
//!   channel private to the connection, with a custom peer the endpoint's named
//!   semaphores (named events on Windows); see [`ack_names`] and `docs/protocol.md`.
//! * Connection loss reaches [`Socket::message_handler`] (or a pending
//!   [`Socket::recv`]) as one `Io` error of kind `ConnectionReset`, "connection lost".
//! * [`listen`] gives the server side with the same endpoint rules.

mod ack;
mod admission;
mod budget;
mod buffers;
mod conn;
mod connect;
mod error;
mod frame;
mod inbox;
mod listener;
mod local;
mod options;
mod os;
mod readiness;
mod reserve;
mod resolve;
mod runtime;
mod socket;
mod ws;

pub use admission::{DEFAULT_MAX_CONNECTIONS, default_max_connections};
pub use budget::PENDING_READ_BUDGET;
pub use buffers::reuse_buffer;
pub use error::{DetectionError, MessageTooLarge, PeerClosed, SocketError, WsError};
pub use frame::{FrameDecoder, MAX_MESSAGE_LEN};
pub use inbox::{DEFAULT_MAX_BYTES, DEFAULT_MAX_MESSAGES};
pub use listener::Listener;
pub use options::{ConnectOptions, DEFAULT_ACK_TIMEOUT, ListenOptions};
pub use readiness::Poller;
pub use resolve::{
    Os, Resolution, Transport, ack_names, decide, detection_guidance_to_stderr, env_source,
    pipe_ack_names, pipe_path, resolve, unix_ack_names,
};
pub use runtime::{ProcessEpoch, runtime};
pub use socket::{Batch, SentMark, Socket, loop_turn_ends};

/// Connects to `endpoint` with the default [`ConnectOptions`].
///
/// `ws://…`/`wss://…` (any case) connects a WebSocket; anything else is local and needs
/// `target` and `os` in the environment (`IPCEZ_TARGET` / `IPCEZ_OS` win when set).
pub async fn socket_init(endpoint: &str) -> Result<Socket, SocketError> {
    ConnectOptions::default().connect(endpoint).await
}

/// Listens on `endpoint` with the default [`ListenOptions`] (Unix socket mode 0600).
pub async fn listen(endpoint: &str) -> Result<Listener, SocketError> {
    ListenOptions::default().listen(endpoint).await
}
