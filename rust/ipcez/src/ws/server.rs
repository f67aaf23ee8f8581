//! The server side of one connection: the HTTP request head is read first, so that a
//! request that is no WebSocket upgrade gets a real HTTP answer, then replayed to
//! tungstenite for the upgrade.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::policy::{Chosen, Policy};
use super::stream::{WsStream, config};
use super::tcp::TcpFd;
use crate::budget::ReadBudget;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// The most an HTTP request head may take before it is refused.
const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// Reads the HTTP request head so that a request that is no WebSocket upgrade gets a real
/// HTTP answer (400 or 426) instead of the silent close tungstenite gives it. Returns the
/// bytes read, to be replayed to tungstenite, or `None` after answering.
async fn read_upgrade_request<S>(stream: &mut S, peer: &str) -> io::Result<Option<Vec<u8>>>
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
            log::info!("request from {peer} refused with {status}: {why}");
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

/// Answers one incoming connection: a real HTTP error unless it asks for a WebSocket
/// upgrade that `policy` allows, otherwise the upgraded WebSocket. `stream` is read
/// through `budget`; `peer` names who is at the other end and its TCP socket.
pub(crate) async fn upgrade<S>(
    mut stream: S,
    policy: &Policy,
    (peer, fd): (String, TcpFd),
    budget: Arc<ReadBudget>,
) -> io::Result<WsStream>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Some(head) = read_upgrade_request(&mut stream, &peer).await? else {
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
    let chosen = Chosen::default();
    let callback = policy.clone().callback(peer.clone(), chosen.clone());
    let ws = tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config()))
        .await
        .map_err(io::Error::other)?;
    let subprotocol = chosen.lock().unwrap_or_else(|p| p.into_inner()).take();
    Ok(WsStream::new(ws, subprotocol, budget, peer, fd))
}
