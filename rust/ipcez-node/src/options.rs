//! The option objects of `connect` and `listen`, turned into the core's options.

use std::time::Duration;

use ipcez::{ConnectOptions, ListenOptions};
use napi_derive::napi;

/// `connect`'s options (all optional; the core's defaults otherwise).
#[napi(object)]
#[derive(Default)]
pub struct ConnectArgs {
    /// How long a local send waits for the recipient's ack, in milliseconds (default 5000).
    pub ack_timeout: Option<f64>,
    /// WebSocket subprotocols to offer, in order of preference.
    pub subprotocols: Option<Vec<String>>,
}

/// `listen`'s options (all optional; the core's defaults otherwise).
#[napi(object)]
#[derive(Default)]
pub struct ListenArgs {
    /// Permission bits of a Unix socket file (default 0o600).
    pub mode: Option<u32>,
    /// PEM certificate chain (`wss://`).
    pub certfile: Option<String>,
    /// PEM private key (`wss://`).
    pub keyfile: Option<String>,
    /// The ack timeout of accepted sockets, in milliseconds (default 5000).
    pub ack_timeout: Option<f64>,
    /// Open connections at most, accepted plus waiting (default 1024).
    pub max_connections: Option<u32>,
    /// WebSocket `Origin` values allowed besides the listener's own (`*` for any).
    pub origins: Option<Vec<String>>,
    /// WebSocket subprotocols this listener speaks.
    pub subprotocols: Option<Vec<String>>,
}

/// Milliseconds from JavaScript as a duration: finite and not negative (else what is wrong).
fn millis(name: &str, ms: Option<f64>, default: Duration) -> Result<Duration, String> {
    match ms {
        None => Ok(default),
        Some(ms) if ms.is_finite() && ms >= 0.0 => Ok(Duration::from_secs_f64(ms / 1000.0)),
        Some(ms) => Err(format!(
            "{name} must be a finite number of milliseconds, 0 or more (got {ms})"
        )),
    }
}

impl ConnectArgs {
    pub(crate) fn into_options(self) -> Result<ConnectOptions, String> {
        let defaults = ConnectOptions::default();
        Ok(ConnectOptions {
            ack_timeout: millis("ackTimeout", self.ack_timeout, defaults.ack_timeout)?,
            subprotocols: self.subprotocols.unwrap_or_default(),
            ..defaults
        })
    }
}

impl ListenArgs {
    pub(crate) fn into_options(self) -> Result<ListenOptions, String> {
        let defaults = ListenOptions::default();
        let connection = ConnectArgs {
            ack_timeout: self.ack_timeout,
            subprotocols: None,
        }
        .into_options()?;
        Ok(ListenOptions {
            mode: self.mode.unwrap_or(defaults.mode),
            certfile: self.certfile.map(Into::into),
            keyfile: self.keyfile.map(Into::into),
            connection,
            max_connections: self
                .max_connections
                .map_or(defaults.max_connections, |n| n as usize),
            origins: self.origins.unwrap_or_default(),
            subprotocols: self.subprotocols.unwrap_or_default(),
        })
    }
}
