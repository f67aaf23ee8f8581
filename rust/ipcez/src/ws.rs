//! WebSocket client and listener (tokio-tungstenite, TLS by rustls with the ring provider).

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpListener;
use tokio_tungstenite::Connector;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{StatusCode, Uri};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::MAX_MESSAGE_LEN;
use crate::error::{SocketError, invalid_input};
use crate::listener::{Accepted, ListenOptions};
use crate::socket::{ConnectOptions, Socket, ws_error_to_socket_error};

/// How long an incoming connection may take to finish its TLS and upgrade handshakes.
const SERVER_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The 4 MiB limit, enforced by tungstenite on what the peer sends.
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_LEN))
        .max_frame_size(Some(MAX_MESSAGE_LEN))
}

/// The parts of a `ws://` / `wss://` URL ipcez uses.
struct WsUrl {
    secure: bool,
    host: String,
    port: u16,
    path: String,
}

fn parse_url(url: &str) -> Result<WsUrl, SocketError> {
    let bad = |why: &str| {
        invalid_input(format!(
            "invalid WebSocket URL {url:?}: {why}; expected ws://host:port/path or wss://…"
        ))
    };
    let uri: Uri = url.parse().map_err(|e| bad(&format!("{e}")))?;
    let secure = match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
        Some("ws") => false,
        Some("wss") => true,
        _ => return Err(bad("the scheme must be ws or wss")),
    };
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| bad("no host"))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
    let path = match uri.path() {
        "" => "/".to_string(),
        p => p.to_string(),
    };
    Ok(WsUrl {
        secure,
        host,
        port,
        path,
    })
}

/// Checks that `url` is a usable WebSocket URL (used by `resolve`).
pub(crate) fn validate_url(url: &str) -> Result<(), SocketError> {
    parse_url(url).map(|_| ())
}

/// The roots a `wss://` client trusts: the system's, plus the PEM bundle named by
/// `SSL_CERT_FILE` when set. Certificates are always verified.
fn client_tls() -> Result<Arc<rustls::ClientConfig>, SocketError> {
    static SYSTEM_ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    let system = SYSTEM_ROOTS.get_or_init(|| {
        let mut certs = rustls_native_certs::load_native_certs().certs;
        // rustls-native-certs reads only SSL_CERT_FILE when it is set; add the usual
        // system bundles too, so the variable adds to the system roots, as documented.
        for bundle in [
            "/etc/ssl/certs/ca-certificates.crt",
            "/etc/pki/tls/certs/ca-bundle.crt",
            "/etc/ssl/cert.pem",
        ] {
            if let Ok(iter) = CertificateDer::pem_file_iter(bundle) {
                certs.extend(iter.flatten());
                break;
            }
        }
        certs
    });
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(system.iter().cloned());
    if let Some(path) = std::env::var_os("SSL_CERT_FILE") {
        let certs = CertificateDer::pem_file_iter(&path).map_err(|e| {
            invalid_input(format!(
                "cannot read SSL_CERT_FILE={}: {e}",
                path.to_string_lossy()
            ))
        })?;
        roots.add_parsable_certificates(certs.flatten());
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| SocketError::Io(io::Error::other(e)))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

pub(crate) async fn connect(url: &str, opts: &ConnectOptions) -> Result<Socket, SocketError> {
    let parsed = parse_url(url)?;
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
        Some(ws_config()),
        true,
        Some(connector),
    );
    let (ws, _response) = tokio::time::timeout(opts.handshake_timeout, handshake)
        .await
        .map_err(|_| {
            SocketError::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "connecting to {url} timed out after {:?}",
                    opts.handshake_timeout
                ),
            ))
        })?
        .map_err(|e| match ws_error_to_socket_error(e) {
            SocketError::Io(io) => SocketError::Io(io::Error::new(
                io.kind(),
                format!("cannot connect to {url}: {io}"),
            )),
            other => other,
        })?;
    Ok(Socket::from_ws(url.to_string(), ws, opts))
}

fn server_tls(opts: &ListenOptions) -> Result<tokio_rustls::TlsAcceptor, SocketError> {
    let (Some(cert), Some(key)) = (&opts.certfile, &opts.keyfile) else {
        return Err(invalid_input(
            "wss:// listening needs a PEM certificate and key (certfile and keyfile)",
        ));
    };
    let read_err = |what: &str, path: &std::path::Path, e: &dyn std::fmt::Display| {
        invalid_input(format!("cannot read the {what} {}: {e}", path.display()))
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| read_err("certificate file", cert, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| read_err("certificate file", cert, &e))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| read_err("key file", key, &e))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| SocketError::Io(io::Error::other(e)))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| invalid_input(format!("the certificate and key do not fit together: {e}")))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Binds `host:port` and upgrades requests for the URL's path; others get 404.
pub(crate) async fn listen(
    url: &str,
    opts: &ListenOptions,
    accepted: Accepted,
) -> Result<(tokio::task::JoinHandle<()>, String), SocketError> {
    let parsed = parse_url(url)?;
    let tls = if parsed.secure {
        Some(server_tls(opts)?)
    } else {
        None
    };
    let listener = TcpListener::bind((parsed.host.as_str(), parsed.port))
        .await
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot listen on {}:{}: {e}", parsed.host, parsed.port),
            )
        })?;
    let local: SocketAddr = listener.local_addr()?;
    let scheme = if parsed.secure { "wss" } else { "ws" };
    let address = format!("{scheme}://{local}{}", parsed.path);
    let accepted = Arc::new(accepted);
    let path: Arc<str> = parsed.path.into();
    let conn_opts = opts.connection.clone();
    let endpoint = address.clone();
    let task = tokio::spawn(async move {
        loop {
            let (tcp, _peer) = match listener.accept().await {
                Ok(c) => c,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let (tls, path, accepted, opts, endpoint) = (
                tls.clone(),
                path.clone(),
                accepted.clone(),
                conn_opts.clone(),
                endpoint.clone(),
            );
            // Each handshake runs on its own, so a slow or hostile client holds up nobody.
            tokio::spawn(async move {
                let socket = tokio::time::timeout(SERVER_HANDSHAKE_TIMEOUT, async {
                    match tls {
                        Some(tls) => upgrade(tls.accept(tcp).await?, &path, endpoint, &opts).await,
                        None => upgrade(tcp, &path, endpoint, &opts).await,
                    }
                })
                .await;
                if let Ok(Ok(socket)) = socket {
                    accepted.deliver(socket).await;
                }
            });
        }
    });
    Ok((task, address))
}

/// The most an HTTP request head may take before it is refused.
const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// Reads the HTTP request head so that a request that is no WebSocket upgrade gets a real
/// HTTP answer (400 or 426) instead of the silent close tungstenite gives it. Returns the
/// bytes read, to be replayed to tungstenite, or `None` after answering.
async fn read_upgrade_request<S>(stream: &mut S) -> io::Result<Option<Vec<u8>>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let verdict = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        head.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&head) {
            Ok(httparse::Status::Complete(_)) => {
                let upgrade = request.headers.iter().any(|h| {
                    h.name.eq_ignore_ascii_case("upgrade")
                        && String::from_utf8_lossy(h.value)
                            .to_ascii_lowercase()
                            .contains("websocket")
                });
                break match (request.method, upgrade) {
                    (Some("GET"), true) => None,
                    _ => Some((
                        "426 Upgrade Required",
                        "this endpoint speaks WebSocket only; connect with a ws:// or wss:// client",
                    )),
                };
            }
            // Not even HTTP (garbage, a TLS hello on ws://): say so at once.
            Err(_) => break Some(("400 Bad Request", "this is not an HTTP request")),
            Ok(httparse::Status::Partial) if head.len() > MAX_REQUEST_HEAD => {
                break Some((
                    "431 Request Header Fields Too Large",
                    "the request head is too large",
                ));
            }
            Ok(httparse::Status::Partial) => {}
        }
    };
    match verdict {
        None => Ok(Some(head)),
        Some((status, why)) => {
            answer(stream, status, why).await;
            Ok(None)
        }
    }
}

/// Writes a short HTTP error response (best effort: the connection closes either way).
async fn answer<S: AsyncWrite + Unpin>(stream: &mut S, status: &str, why: &str) {
    let body = format!("ipcez: {why}\n");
    let response = format!(
        "HTTP/1.1 {status}\r\nUpgrade: websocket\r\nConnection: close\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// A stream that first replays bytes already read from it.
struct Replay<S> {
    head: Vec<u8>,
    pos: usize,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Replay<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pos < self.head.len() {
            let n = (self.head.len() - self.pos).min(buf.remaining());
            let start = self.pos;
            buf.put_slice(&self.head[start..start + n]);
            self.pos += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Replay<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

async fn upgrade<S>(
    mut stream: S,
    path: &str,
    endpoint: String,
    opts: &ConnectOptions,
) -> io::Result<Socket>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Some(head) = read_upgrade_request(&mut stream).await? else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a WebSocket upgrade",
        ));
    };
    let stream = Replay {
        head,
        pos: 0,
        inner: stream,
    };
    // The callback's signature is tungstenite's; its error type is simply large.
    #[allow(clippy::result_large_err)]
    let check_path = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        if req.uri().path() == path {
            return Ok(resp);
        }
        let mut not_found = ErrorResponse::new(Some(format!(
            "ipcez: no WebSocket endpoint at {}; this listener serves {path}\n",
            req.uri().path()
        )));
        *not_found.status_mut() = StatusCode::NOT_FOUND;
        Err(not_found)
    };
    let ws = tokio_tungstenite::accept_hdr_async_with_config(stream, check_path, Some(ws_config()))
        .await
        .map_err(io::Error::other)?;
    Ok(Socket::from_ws(endpoint, ws, opts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_parts_and_defaults() {
        let u = parse_url("ws://127.0.0.1:0/demo").unwrap();
        assert_eq!(
            (u.secure, u.host.as_str(), u.port, u.path.as_str()),
            (false, "127.0.0.1", 0, "/demo")
        );
        let u = parse_url("WSS://example.com").unwrap();
        assert_eq!((u.secure, u.port, u.path.as_str()), (true, 443, "/"));
        let u = parse_url("ws://[::1]:9000/x").unwrap();
        assert_eq!(u.host, "::1");
        assert!(parse_url("ws://").is_err());
    }
}
