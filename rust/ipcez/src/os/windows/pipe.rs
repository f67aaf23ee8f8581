//! Named pipe client and server (tokio), mirroring `os::unix::uds`.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::windows::named_pipe::{ClientOptions, ServerOptions};

use crate::ack::AckPair;
use crate::error::SocketError;
use crate::listener::Accepted;
use crate::local::LocalStream;
use crate::resolve::{Transport, pipe_ack_names};
use crate::socket::{ConnectOptions, Socket};

/// ERROR_PIPE_BUSY: every server instance is taken; retry shortly.
const ERROR_PIPE_BUSY: i32 = 231;

pub(crate) async fn connect(pipe: &str, opts: &ConnectOptions) -> Result<Socket, SocketError> {
    let client = loop {
        match ClientOptions::new().open(pipe) {
            Ok(c) => break c,
            Err(e) if e.raw_os_error() == Some(ERROR_PIPE_BUSY) => {
                tokio::time::sleep(Duration::from_millis(10)).await
            }
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot connect to the named pipe {pipe}: {e}"),
                )
                .into());
            }
        }
    };
    let acks = Arc::new(AckPair::open(&pipe_ack_names(pipe), 0)?);
    Ok(Socket::from_local(
        Transport::NamedPipe,
        pipe.to_string(),
        LocalStream::PipeClient(client),
        acks,
        opts,
    ))
}

/// Keeps one server instance waiting for the next client at all times.
pub(crate) async fn listen(
    pipe: &str,
    opts: &ConnectOptions,
    accepted: Accepted,
) -> Result<tokio::task::JoinHandle<()>, SocketError> {
    let mut server = ServerOptions::new()
        .first_pipe_instance(true)
        .create(pipe)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {pipe}: {e}")))?;
    let acks = Arc::new(AckPair::open(&pipe_ack_names(pipe), 0)?);
    let (pipe, opts) = (pipe.to_string(), opts.clone());
    Ok(tokio::spawn(async move {
        loop {
            if server.connect().await.is_err() {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
            let next = match ServerOptions::new().create(&pipe) {
                Ok(n) => n,
                Err(_) => break,
            };
            let connected = std::mem::replace(&mut server, next);
            let socket = Socket::from_local(
                Transport::NamedPipe,
                pipe.clone(),
                LocalStream::PipeServer(connected),
                acks.clone(),
                &opts,
            );
            if !accepted.deliver(socket).await {
                break;
            }
        }
    }))
}
