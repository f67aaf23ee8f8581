//! The settings of connections and listeners, with their documented defaults.

use std::path::PathBuf;
use std::time::Duration;

#[cfg(doc)]
use crate::admission::DEFAULT_MAX_CONNECTIONS;
use crate::admission::default_max_connections;
use crate::inbox::{DEFAULT_MAX_BYTES, DEFAULT_MAX_MESSAGES};

/// The default time a local send waits for the recipient's ack.
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// Per-connection settings. `Default` gives the documented defaults.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// How long a local send waits for "data acked" (default 5 s). Also bounds how long a
    /// send may wait for the peer to make room for the frame, on every transport.
    pub ack_timeout: Duration,
    /// Read-but-untaken messages kept per connection before the reader pauses (default 1,024).
    pub max_queued_messages: usize,
    /// Bytes those messages may hold before the reader pauses (default 64 MiB).
    pub max_queued_bytes: usize,
    /// How long a WebSocket connect (TCP, TLS and upgrade) may take (default 30 s).
    pub handshake_timeout: Duration,
    /// WebSocket liveness: after this long without anything from the peer, ipcez sends a
    /// ping; if another such period passes in silence, the connection is lost (default
    /// 20 s). This is how a silent network drop is noticed. Zero turns it off.
    pub ws_keepalive: Duration,
    /// WebSocket subprotocols to offer, in order of preference (default none). The one the
    /// listener picks is [`Socket::subprotocol`](crate::Socket::subprotocol).
    pub subprotocols: Vec<String>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            ack_timeout: DEFAULT_ACK_TIMEOUT,
            max_queued_messages: DEFAULT_MAX_MESSAGES,
            max_queued_bytes: DEFAULT_MAX_BYTES,
            handshake_timeout: Duration::from_secs(30),
            ws_keepalive: Duration::from_secs(20),
            subprotocols: Vec::new(),
        }
    }
}

impl ConnectOptions {
    /// Sets the ack timeout.
    pub fn ack_timeout(mut self, timeout: Duration) -> Self {
        self.ack_timeout = timeout;
        self
    }

    /// Sets the bounds of the per-connection queue of received messages.
    pub fn queue_limits(mut self, messages: usize, bytes: usize) -> Self {
        self.max_queued_messages = messages;
        self.max_queued_bytes = bytes;
        self
    }
}

/// Settings of a listener. `Default` gives the documented defaults.
#[derive(Debug, Clone)]
pub struct ListenOptions {
    /// Permission bits of a Unix socket file (default `0o600`, owner only).
    pub mode: u32,
    /// PEM certificate chain, required for `wss://` listening.
    pub certfile: Option<PathBuf>,
    /// PEM private key, required for `wss://` listening.
    pub keyfile: Option<PathBuf>,
    /// Settings of each accepted connection.
    pub connection: ConnectOptions,
    /// Open connections at most, accepted plus not yet accepted (default
    /// [`default_max_connections`]: [`DEFAULT_MAX_CONNECTIONS`], 1,024, or fewer to fit under
    /// the process's descriptor limit); beyond it new connections are closed at once.
    pub max_connections: usize,
    /// WebSocket: `Origin` values allowed besides the listener's own (default none; `*`
    /// allows any). A request without `Origin` is always allowed; others get 403.
    pub origins: Vec<String>,
    /// WebSocket: subprotocols this listener speaks; the first one the client offers that
    /// is listed here is chosen. A client that offers only others is refused (400).
    pub subprotocols: Vec<String>,
}

impl Default for ListenOptions {
    fn default() -> Self {
        ListenOptions {
            mode: 0o600,
            certfile: None,
            keyfile: None,
            connection: ConnectOptions::default(),
            max_connections: default_max_connections(),
            origins: Vec::new(),
            subprotocols: Vec::new(),
        }
    }
}
