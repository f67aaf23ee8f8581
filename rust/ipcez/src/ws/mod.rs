//! WebSocket: tokio-tungstenite, TLS by rustls with the ring provider.
//!
//! The transport (`url`, `tls`, `client`, `server`, `acceptor`) gives connected
//! [`WsStream`]s; [`WsConn`] is a connection above it: send, close and the reader task.

mod acceptor;
mod client;
mod conn;
mod errors;
mod policy;
mod reading;
mod server;
mod stream;
mod tcp;
mod tls;
mod url;

pub(crate) use acceptor::{Acceptor, ListenSettings, Room, listen};
pub(crate) use client::connect;
pub(crate) use conn::WsConn;
pub(crate) use stream::WsStream;
pub(crate) use url::validate_url;
