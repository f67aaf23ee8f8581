//! The client side: TCP, TLS for `wss://`, and the upgrade, within a time limit.

use std::io;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_tungstenite::Connector;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, header};

use super::errors::ws_error_to_socket_error;
use super::stream::{WsStream, config};
use super::tcp::DirectTcp;
use super::tls::client_tls;
use super::url::WsUrl;
use crate::budget::{Budgeted, ReadBudget};
use crate::error::{SocketError, invalid_input};

/// Connects to `url`, offering `subprotocols` (in order of preference), giving up after
/// `timeout`.
pub(crate) async fn connect(
    url: &str,
    subprotocols: &[String],
    timeout: Duration,
) -> Result<WsStream, SocketError> {
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
    let mut request = request_url
        .into_client_request()
        .map_err(ws_error_to_socket_error)?;
    if !subprotocols.is_empty() {
        let offer = HeaderValue::from_str(&subprotocols.join(", ")).map_err(|_| {
            invalid_input(format!(
                "invalid WebSocket subprotocols {subprotocols:?}: use names of letters, digits \
                 and !#$%&'*+-.^_`|~ only"
            ))
        })?;
        request
            .headers_mut()
            .insert(header::SEC_WEBSOCKET_PROTOCOL, offer);
    }
    let budget = ReadBudget::unlimited();
    let handshake = async {
        let tcp = TcpStream::connect((parsed.host.as_str(), parsed.port))
            .await
            .map_err(tokio_tungstenite::tungstenite::Error::Io)?;
        let _ = tcp.set_nodelay(true);
        let tcp = DirectTcp::new(tcp).map_err(tokio_tungstenite::tungstenite::Error::Io)?;
        let fd = tcp.fd();
        let tcp = Budgeted::new(tcp, budget.clone());
        tokio_tungstenite::client_async_tls_with_config(
            request,
            tcp,
            Some(config()),
            Some(connector),
        )
        .await
        .map(|upgraded| (upgraded, fd))
    };
    let ((ws, response), fd) = tokio::time::timeout(timeout, handshake)
        .await
        .map_err(|_| {
            SocketError::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connecting to {url} timed out after {timeout:?}"),
            ))
        })?
        .map_err(|e| match ws_error_to_socket_error(e) {
            SocketError::Io(io) => {
                let hint = match io.kind() {
                    io::ErrorKind::ConnectionRefused => {
                        "; is the server running, and are the host and port right?"
                    }
                    _ => "",
                };
                SocketError::Io(io::Error::new(
                    io.kind(),
                    format!("cannot connect to {url}: {io}{hint}"),
                ))
            }
            other => other,
        })?;
    let subprotocol = response
        .headers()
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let peer = format!("{}:{}", parsed.host, parsed.port);
    Ok(WsStream::new(ws, subprotocol, budget, peer, fd))
}
