//! The listening side: binds `host:port` and hands up upgraded WebSockets for the URL's
//! path. Every handshake runs in a task of its own, so a slow or hostile client holds up
//! nobody.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

use super::server::upgrade;
use super::stream::WsStream;
use super::tls::server_tls;
use super::url::WsUrl;
use crate::error::SocketError;

/// How long an incoming connection may take to finish its TLS and upgrade handshakes.
const SERVER_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Upgraded connections not yet taken by `accept`.
const UPGRADED_BACKLOG: usize = 16;

/// Accepts TCP connections and upgrades them.
pub(crate) struct Acceptor {
    tcp: TcpListener,
    tls: Option<TlsAcceptor>,
    path: Arc<str>,
    upgraded_tx: mpsc::Sender<WsStream>,
    upgraded: mpsc::Receiver<WsStream>,
}

/// Binds the host and port of `url` (the certificate and key are needed for `wss://`).
/// Returns the acceptor and the URL it serves, with the real port when port 0 was asked.
pub(crate) async fn listen(
    url: &str,
    certfile: Option<&Path>,
    keyfile: Option<&Path>,
) -> Result<(Acceptor, String), SocketError> {
    let parsed = WsUrl::parse(url)?;
    let tls = if parsed.secure {
        Some(server_tls(certfile, keyfile)?)
    } else {
        None
    };
    let tcp = TcpListener::bind((parsed.host.as_str(), parsed.port))
        .await
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot listen on {}:{}: {e}", parsed.host, parsed.port),
            )
        })?;
    let local: SocketAddr = tcp.local_addr()?;
    let scheme = if parsed.secure { "wss" } else { "ws" };
    let address = format!("{scheme}://{local}{}", parsed.path);
    let (upgraded_tx, upgraded) = mpsc::channel(UPGRADED_BACKLOG);
    let acceptor = Acceptor {
        tcp,
        tls,
        path: parsed.path.into(),
        upgraded_tx,
        upgraded,
    };
    Ok((acceptor, address))
}

impl Acceptor {
    /// The next upgraded connection (cancel-safe). An error is one failed TCP accept (out
    /// of file descriptors and the like); failed handshakes are dropped silently.
    pub(crate) async fn accept(&mut self) -> io::Result<WsStream> {
        loop {
            tokio::select! {
                // Never `None`: this acceptor holds a sender.
                Some(ws) = self.upgraded.recv() => return Ok(ws),
                tcp = self.tcp.accept() => {
                    let (tcp, _peer) = tcp?;
                    self.start_handshake(tcp);
                }
            }
        }
    }

    fn start_handshake(&self, tcp: tokio::net::TcpStream) {
        let _ = tcp.set_nodelay(true);
        let (tls, path, done) = (
            self.tls.clone(),
            self.path.clone(),
            self.upgraded_tx.clone(),
        );
        tokio::spawn(async move {
            let ws = tokio::time::timeout(SERVER_HANDSHAKE_TIMEOUT, async {
                match tls {
                    Some(tls) => upgrade(tls.accept(tcp).await?, &path).await,
                    None => upgrade(tcp, &path).await,
                }
            })
            .await;
            if let Ok(Ok(ws)) = ws {
                // Fails only once the listener is gone; the connection closes with it.
                let _ = done.send(ws).await;
            }
        });
    }
}
