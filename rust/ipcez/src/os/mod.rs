//! Platform backends: one complete local transport per OS family, behind `cfg` at the
//! module boundary. Each gives the same names: `LocalStream` (a connected stream),
//! `connect`, `listen` → `Acceptor` + `Cleanup`, and the `TRANSPORT` it implements.
//! Backends return streams and ack signals only; sockets are built above them.

#[cfg(unix)]
pub(crate) mod unix;
#[cfg(windows)]
pub(crate) mod windows;

#[cfg(unix)]
pub(crate) use unix::{Acceptor, Cleanup, LocalStream, TRANSPORT, connect, listen};
#[cfg(windows)]
pub(crate) use windows::{Acceptor, Cleanup, LocalStream, TRANSPORT, connect, listen};

#[cfg(not(any(unix, windows)))]
compile_error!("ipcez supports Unix-like systems and Windows only");
