//! Windows: named pipes for the stream, named events for the acks.
//!
//! UNTESTED: no Windows target can be built where this project is developed; this module
//! mirrors `os::unix` and is kept small on purpose. See the README's platform table.

pub(crate) mod event;
mod pipe;
mod stream;

pub(crate) use pipe::{Acceptor, Cleanup, connect, listen};
pub(crate) use stream::PipeStream as LocalStream;

/// The local transport of this OS family.
pub(crate) const TRANSPORT: crate::resolve::Transport = crate::resolve::Transport::NamedPipe;
