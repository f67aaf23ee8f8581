//! Named pipe client and server (tokio), mirroring the Unix socket backend: each gives
//! connected streams with the endpoint's ack signals.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::windows::named_pipe::{ClientOptions, NamedPipeServer, ServerOptions};

use super::stream::PipeStream;
use crate::ack::AckPair;
use crate::error::SocketError;
use crate::resolve::pipe_ack_names;

/// ERROR_PIPE_BUSY: every server instance is taken; retry shortly.
const ERROR_PIPE_BUSY: i32 = 231;

/// Connects to `pipe` (waiting while every instance is busy) and opens its ack signals.
pub(crate) async fn connect(pipe: &str) -> Result<(PipeStream, Arc<AckPair>), SocketError> {
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
    Ok((PipeStream::Client(client), acks))
}

/// Keeps one server instance waiting for the next client at all times.
#[derive(Debug)]
pub(crate) struct Acceptor {
    pipe: String,
    server: NamedPipeServer,
    acks: Arc<AckPair>,
}

impl Acceptor {
    /// The next connection.
    pub(crate) async fn accept(&mut self) -> io::Result<(PipeStream, Arc<AckPair>)> {
        self.server.connect().await?;
        let next = ServerOptions::new().create(&self.pipe)?;
        let connected = std::mem::replace(&mut self.server, next);
        Ok((PipeStream::Server(connected), self.acks.clone()))
    }
}

/// Nothing to remove when a pipe listener closes: the pipe and the events vanish with
/// their last handle.
#[derive(Debug)]
pub(crate) struct Cleanup;

impl Cleanup {
    pub(crate) fn run(&self) {}
}

/// Creates the first instance of `pipe` (`_mode` is a Unix notion and is ignored).
pub(crate) async fn listen(pipe: &str, _mode: u32) -> Result<(Acceptor, Cleanup), SocketError> {
    let server = ServerOptions::new()
        .first_pipe_instance(true)
        .create(pipe)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {pipe}: {e}")))?;
    let acks = Arc::new(AckPair::open(&pipe_ack_names(pipe), 0)?);
    let acceptor = Acceptor {
        pipe: pipe.to_string(),
        server,
        acks,
    };
    Ok((acceptor, Cleanup))
}
