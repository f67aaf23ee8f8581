//! The client side: TCP, TLS for `wss://`, and the upgrade, within a time limit.

use std::io;
use std::time::Duration;

use tokio_tungstenite::Connector;

use super::errors::ws_error_to_socket_error;
use super::stream::{WsStream, config};
use super::tls::client_tls;
use super::url::WsUrl;
use crate::error::SocketError;

/// Connects to `url`, giving up after `timeout`.
pub(crate) async fn connect(url: &str, timeout: Duration) -> Result<WsStream, SocketError> {
    let parsed = WsUrl::parse(url)?;
    let connector = if parsed.secure {
        Connector::Rustls(client_tls()?)
    } else {
        Connector::Plain
    };
    // The scheme is case-insensitive for ipcez; tungstenite only knows "ws" and "wss".
    let scheme_len = url.find("://").unwrap_or(0);
    let request_url = format!(
        "{}{}",
        url[..scheme_len].to_ascii_lowercase(),
        &url[scheme_len..]
    );
    let handshake = tokio_tungstenite::connect_async_tls_with_config(
        request_url,
        Some(config()),
        true,
        Some(connector),
    );
    let (ws, _response) = tokio::time::timeout(timeout, handshake)
        .await
        .map_err(|_| {
            SocketError::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connecting to {url} timed out after {timeout:?}"),
            ))
        })?
        .map_err(|e| match ws_error_to_socket_error(e) {
            SocketError::Io(io) => SocketError::Io(io::Error::new(
                io.kind(),
                format!("cannot connect to {url}: {io}"),
            )),
            other => other,
        })?;
    Ok(WsStream::new(ws))
}
