//! Windows: named pipes for the stream; acks in band between ipcez endpoints
//! (`private_ack` says how each end learns that), named events with custom peers.
//!
//! Tested under Wine (cross-compiled with mingw: `python build.py test --windows`); see
//! docs/platforms.md for what that does and does not cover.

pub(crate) mod event;
mod pipe;
pub(crate) mod private_ack;
mod stream;

pub(crate) use pipe::{Acceptor, Cleanup, connect, listen};
pub(crate) use stream::PipeStream as LocalStream;

/// The local transport of this OS family.
pub(crate) const TRANSPORT: crate::resolve::Transport = crate::resolve::Transport::NamedPipe;
