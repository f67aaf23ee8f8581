//! `ipcez_result` and `ipcez_error`: every failure as a code, an errno and a message the
//! caller can read. The calls that read an error are in `error_access.rs`.

use std::any::Any;
use std::io;

use ipcez::{MessageTooLarge, PeerClosed, SocketError};

/// The outcome of a fallible call.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum ipcez_result {
    /// Done; out-parameters are written.
    Ok = 0,
    /// The timeout ran out with nothing done; call again to keep waiting.
    Timeout = 1,
    /// Failed; `*out_err` holds the error.
    Error = 2,
}

/// What kind of error an `ipcez_error` is. The numbers are stable; new codes are only added.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum ipcez_error_kind {
    /// An I/O failure; see `ipcez_error_errno`.
    Io = 1,
    /// The connection ended (peer closed, crashed, network dropped, or closed locally).
    ConnectionLost = 2,
    /// A message over 4 MiB was refused before anything was sent.
    MessageTooLarge = 3,
    /// The WebSocket handshake or protocol failed.
    Ws = 4,
    /// The `(target, os)` pair is not supported by this build; see the detail fields.
    UnsupportedCombination = 5,
    /// `target` / `os` are missing or invalid; see the `variable` detail field.
    Detection = 6,
    /// The recipient did not acknowledge within the ack timeout.
    RecipientAckTimeout = 7,
    /// ipcez panicked: a bug, reported instead of crashing the host.
    Panic = 8,
    /// A required pointer argument was NULL: a bug in the binding.
    NullParameter = 9,
    /// The handle was made by the parent of this process, before a `fork()`: it is left
    /// to the parent (using it fails, closing and freeing it do nothing); connect or
    /// listen again in the child.
    Forked = 10,
}

/// Which detail string `ipcez_error_detail` returns.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum ipcez_error_field {
    /// The `target` value of an unsupported combination.
    Target = 0,
    /// The `os` value of an unsupported combination.
    Os = 1,
    /// The environment variable at fault in a detection error.
    Variable = 2,
    /// A detection error's message with how to fix it, for the binding to show its user
    /// (see `ipcez_detection_guidance_to_stderr`).
    Guidance = 3,
    /// The close code a WebSocket peer ended the connection with, in decimal (e.g.
    /// `"1001"`), on a connection-lost error.
    CloseCode = 4,
    /// The reason text of that close frame (possibly empty).
    CloseReason = 5,
}

/// An error returned through an `ipcez_error **out_err` parameter. Owned by the caller, who
/// frees it with `ipcez_error_free`.
#[allow(non_camel_case_types)]
pub struct ipcez_error {
    _private: [u8; 0],
}

/// The Rust value behind an `ipcez_error` handle.
#[derive(Debug)]
pub(crate) struct FfiError {
    pub(crate) code: ipcez_error_kind,
    pub(crate) errno: i32,
    pub(crate) message: String,
    pub(crate) details: Box<[String; 6]>,
}

impl FfiError {
    fn new(code: ipcez_error_kind, errno: i32, message: String) -> Self {
        FfiError {
            code,
            errno,
            message,
            details: Default::default(),
        }
    }

    pub(crate) fn null_parameter(what: &str) -> Self {
        Self::new(
            ipcez_error_kind::NullParameter,
            libc::EINVAL,
            format!("ipcez: the {what} pointer is NULL (a bug in the caller)"),
        )
    }

    pub(crate) fn forked(what: &str) -> Self {
        Self::new(
            ipcez_error_kind::Forked,
            0,
            format!("ipcez: this {what} was created before fork; connect again in the child"),
        )
    }

    pub(crate) fn invalid_input(message: String) -> Self {
        Self::new(ipcez_error_kind::Io, libc::EINVAL, message)
    }

    pub(crate) fn panic(payload: &Box<dyn Any + Send>) -> Self {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        Self::new(
            ipcez_error_kind::Panic,
            0,
            format!("ipcez: internal error (panic: {what}); please report it"),
        )
    }

    /// The detail string for an `ipcez_error_field` value, if that field exists.
    pub(crate) fn detail(&self, field: u32) -> Option<&str> {
        let fields = [
            ipcez_error_field::Target,
            ipcez_error_field::Os,
            ipcez_error_field::Variable,
            ipcez_error_field::Guidance,
            ipcez_error_field::CloseCode,
            ipcez_error_field::CloseReason,
        ];
        let f = fields.into_iter().find(|f| *f as u32 == field)?;
        Some(&self.details[f as usize])
    }
}

impl From<SocketError> for FfiError {
    fn from(e: SocketError) -> Self {
        let message = e.to_string();
        match e {
            SocketError::Io(io) => {
                let code = if io.get_ref().is_some_and(|i| i.is::<MessageTooLarge>()) {
                    ipcez_error_kind::MessageTooLarge
                } else if io.kind() == io::ErrorKind::ConnectionReset {
                    ipcez_error_kind::ConnectionLost
                } else {
                    ipcez_error_kind::Io
                };
                let close = io.get_ref().and_then(|i| i.downcast_ref::<PeerClosed>());
                FfiError {
                    details: close.map_or_else(Default::default, |c| {
                        details([(4, c.code.to_string()), (5, c.reason.clone())])
                    }),
                    ..Self::new(code, errno_of(&io), message)
                }
            }
            SocketError::Ws(_) => Self::new(ipcez_error_kind::Ws, 0, message),
            SocketError::UnsupportedCombination(target, os) => FfiError {
                details: details([(0, target), (1, os)]),
                ..Self::new(ipcez_error_kind::UnsupportedCombination, 0, message)
            },
            SocketError::Detection(d) => FfiError {
                details: details([(2, d.variable.clone()), (3, d.guidance())]),
                ..Self::new(ipcez_error_kind::Detection, libc::EINVAL, message)
            },
            SocketError::RecipientAckTimeout => Self::new(
                ipcez_error_kind::RecipientAckTimeout,
                libc::ETIMEDOUT,
                message,
            ),
        }
    }
}

/// Detail strings by `ipcez_error_field` number; the others empty.
fn details<const N: usize>(set: [(usize, String); N]) -> Box<[String; 6]> {
    let mut all: Box<[String; 6]> = Default::default();
    for (i, text) in set {
        all[i] = text;
    }
    all
}

/// The errno a binding should report: the OS's own when there is one, else the C library's
/// errno for the kind (so `ENOENT`, `ECONNREFUSED`, `EADDRINUSE` survive added context).
fn errno_of(e: &io::Error) -> i32 {
    if let Some(n) = e.raw_os_error() {
        return n;
    }
    use io::ErrorKind as K;
    use libc::*;
    match e.kind() {
        K::NotFound => ENOENT,
        K::PermissionDenied => EACCES,
        K::ConnectionRefused => ECONNREFUSED,
        K::ConnectionReset => ECONNRESET,
        K::ConnectionAborted => ECONNABORTED,
        K::NotConnected => ENOTCONN,
        K::AddrInUse => EADDRINUSE,
        K::AddrNotAvailable => EADDRNOTAVAIL,
        K::BrokenPipe => EPIPE,
        K::AlreadyExists => EEXIST,
        K::InvalidInput => EINVAL,
        K::InvalidData => EBADMSG,
        K::TimedOut => ETIMEDOUT,
        _ => 0,
    }
}
