//! Windows: named pipes for the stream, named events for the acks.
//!
//! Tested under Wine (cross-compiled with mingw: `python build.py test --windows`); see
//! docs/platforms.md for what that does and does not cover.

pub(crate) mod event;
mod pipe;
mod stream;

pub(crate) use pipe::{Acceptor, Cleanup, connect, listen};
pub(crate) use stream::PipeStream as LocalStream;

/// The local transport of this OS family.
pub(crate) const TRANSPORT: crate::resolve::Transport = crate::resolve::Transport::NamedPipe;

/// True for the errors a named pipe gives once the other end has gone: closed
/// (`ERROR_BROKEN_PIPE`), closing (`ERROR_NO_DATA`) or disconnected by the server
/// (`ERROR_PIPE_NOT_CONNECTED`, which std does not map to an `ErrorKind`).
pub(crate) fn is_pipe_disconnect(e: &std::io::Error) -> bool {
    use windows_sys::Win32::Foundation::{
        ERROR_BROKEN_PIPE, ERROR_NO_DATA, ERROR_PIPE_NOT_CONNECTED,
    };
    matches!(
        e.raw_os_error().map(|c| c as u32),
        Some(ERROR_BROKEN_PIPE | ERROR_NO_DATA | ERROR_PIPE_NOT_CONNECTED)
    )
}
