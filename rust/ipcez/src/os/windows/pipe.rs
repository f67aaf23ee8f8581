//! Named pipe client and server (tokio), mirroring the Unix socket backend: each gives
//! connected streams with the endpoint's ack signals, and what each end learned about the
//! other (`private_ack`).

use std::io;
use std::os::windows::io::AsRawHandle;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::windows::named_pipe::{
    ClientOptions, NamedPipeClient, NamedPipeServer, ServerOptions,
};

use super::private_ack::{Handshake, Marker, Role, marker_name, peer_pid};
use super::stream::{End, PipeStream};
use crate::ack::AckPair;
use crate::error::SocketError;
use crate::frame::HELLO;
use crate::resolve::pipe_ack_names;

/// ERROR_PIPE_BUSY: every server instance is taken; retry shortly.
const ERROR_PIPE_BUSY: i32 = 231;

/// Connects to `pipe` (waiting while every instance is busy) and opens its ack signals.
pub(crate) async fn connect(pipe: &str) -> Result<(PipeStream, Arc<AckPair>), SocketError> {
    // Announced before the connection exists: see `Acceptor::accept`. Without it, no hello.
    let intent = Marker::hold(&marker_name(pipe, Role::Client, std::process::id())).ok();
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
    let intent = match intent {
        Some(marker) if ipcez_listener(pipe, &client, &marker) => {
            say_hello(&client).await.map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot write to the named pipe {pipe}: {e}"),
                )
            })?;
            Some(marker)
        }
        _ => None,
    };
    let stream = PipeStream::new(End::Client(client), Handshake::Client { intent });
    Ok((stream, acks))
}

/// True when the process at the other end holds the marker of an ipcez listener of `pipe`,
/// and will find our `intent`: a listener's `Global\` marker may be another session's,
/// which sees only our `Global\` names.
fn ipcez_listener(pipe: &str, client: &NamedPipeClient, intent: &Marker) -> bool {
    let Ok(pid) = peer_pid(client.as_raw_handle(), Role::Client) else {
        return false;
    };
    match Marker::find(&marker_name(pipe, Role::Server, pid)) {
        Some(global) => intent.is_global() || !global,
        None => false,
    }
}

/// Writes the hello, the first bytes of the connection (a fresh pipe takes them at once).
async fn say_hello(client: &NamedPipeClient) -> io::Result<()> {
    let wrote = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            client.writable().await?;
            match client.try_write(&HELLO) {
                Ok(n) if n == HELLO.len() => return Ok(()),
                Ok(_) => return Err(io::ErrorKind::WriteZero.into()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    });
    wrote
        .await
        .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
}

/// Keeps one server instance waiting for the next client at all times.
#[derive(Debug)]
pub(crate) struct Acceptor {
    pipe: String,
    server: NamedPipeServer,
    acks: Arc<AckPair>,
    /// Tells clients that this process serves `pipe` with ipcez.
    _marker: Marker,
}

impl Acceptor {
    /// The next connection.
    pub(crate) async fn accept(&mut self) -> io::Result<(PipeStream, Arc<AckPair>)> {
        self.server.connect().await?;
        let next = ServerOptions::new().create(&self.pipe)?;
        let connected = std::mem::replace(&mut self.server, next);
        let client_intent = peer_pid(connected.as_raw_handle(), Role::Server)
            .ok()
            .map(|pid| marker_name(&self.pipe, Role::Client, pid));
        let handshake = Handshake::Server { client_intent };
        let stream = PipeStream::new(End::Server(connected), handshake);
        Ok((stream, self.acks.clone()))
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
    // Before the first instance: a client that can connect finds it.
    let marker = Marker::hold(&marker_name(pipe, Role::Server, std::process::id()))?;
    let server = ServerOptions::new()
        .first_pipe_instance(true)
        .create(pipe)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {pipe}: {e}")))?;
    let acks = Arc::new(AckPair::open(&pipe_ack_names(pipe), 0)?);
    let acceptor = Acceptor {
        pipe: pipe.to_string(),
        server,
        acks,
        _marker: marker,
    };
    Ok((acceptor, Cleanup))
}
