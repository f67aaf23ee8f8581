//! Unix: domain sockets for the stream, POSIX named semaphores for the acks shared with
//! custom peers, and (Linux) a private ack channel per connection between ipcez endpoints.

#[cfg(target_os = "linux")]
pub(crate) mod armed;
mod bind;
mod fdpass;
mod lock;
#[cfg(target_os = "linux")]
pub(crate) mod private_ack;
pub(crate) mod sem;
mod sockpath;
mod stream;
mod uds;

pub(crate) use stream::UdsStream as LocalStream;
pub(crate) use uds::{Acceptor, Cleanup, connect, listen};

/// The local transport of this OS family.
pub(crate) const TRANSPORT: crate::resolve::Transport = crate::resolve::Transport::Unix;
