//! `ipcez_listener`: listening, accepting and closing.

use ipcez::{ListenOptions, Listener};

use crate::boundary::{
    Castable, ProcessBound, call, call_or, free, into_handle, text, try_borrow, write_out,
};
use crate::error::{FfiError, ipcez_error, ipcez_result};
use crate::message::{ipcez_message, new_message};
use crate::socket::{connect_options, ipcez_socket, new_socket, timeout_of};

/// A listener.
#[allow(non_camel_case_types)]
pub struct ipcez_listener {
    _private: [u8; 0],
}

impl Castable for ipcez_listener {
    type Rust = ProcessBound<Listener>;
}

/// Listens on an endpoint. `mode` sets a Unix socket file's permission bits; `certfile`
/// and `keyfile` (PEM paths, length 0 for none) are required for `wss://`. Accepted
/// sockets get `ack_timeout_ms`.
///
/// # Safety
/// Each `(ptr, len)` pair is valid; out-pointers are valid for writes.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn ipcez_listen(
    endpoint: *const u8,
    endpoint_len: usize,
    mode: u32,
    certfile: *const u8,
    certfile_len: usize,
    keyfile: *const u8,
    keyfile_len: usize,
    ack_timeout_ms: u32,
    out_listener: *mut *mut ipcez_listener,
    out_err: *mut *mut ipcez_error,
) -> ipcez_result {
    call(out_err, || {
        let endpoint = unsafe { text(endpoint, endpoint_len, "endpoint") }?;
        let path = |p: &str| (!p.is_empty()).then(|| std::path::PathBuf::from(p));
        let opts = ListenOptions {
            mode,
            certfile: path(unsafe { text(certfile, certfile_len, "certfile") }?),
            keyfile: path(unsafe { text(keyfile, keyfile_len, "keyfile") }?),
            connection: connect_options(ack_timeout_ms),
            ..ListenOptions::default()
        };
        let listener = opts.listen_blocking(endpoint)?;
        unsafe {
            write_out(
                out_listener,
                into_handle::<ipcez_listener>(ProcessBound::new(listener)),
            )
        };
        Ok(ipcez_result::Ok)
    })
}

pub(crate) fn listener_ref<'a>(l: *const ipcez_listener) -> Result<&'a Listener, FfiError> {
    // SAFETY: every export's `# Safety` section makes `l` NULL or a live listener.
    unsafe { try_borrow(l, "listener") }?.get("listener")
}

/// The address the listener listens on (the `ws://` URL with the real port when port 0
/// was asked), as a new message; NULL for NULL.
///
/// # Safety
/// `l` is NULL or a live listener.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_listener_address(l: *const ipcez_listener) -> *mut ipcez_message {
    call_or(std::ptr::null_mut(), || {
        listener_ref(l).map_or(std::ptr::null_mut(), |l| {
            new_message(l.address().as_bytes().to_vec())
        })
    })
}

/// Takes the next connection, waiting up to `timeout_ms` (0 only looks, without waiting).
/// After close: a connection-lost error.
///
/// # Safety
/// `l` is NULL or a live listener; `out_socket` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_listener_accept(
    l: *const ipcez_listener,
    timeout_ms: u32,
    out_socket: *mut *mut ipcez_socket,
    out_err: *mut *mut ipcez_error,
) -> ipcez_result {
    call(out_err, || {
        let l = listener_ref(l)?;
        let next = match timeout_ms {
            0 => l.try_accept()?,
            _ => l.accept_blocking(timeout_of(timeout_ms))?,
        };
        Ok(match next {
            Some(socket) => {
                unsafe { write_out(out_socket, new_socket(socket)) };
                ipcez_result::Ok
            }
            None => ipcez_result::Timeout,
        })
    })
}

/// Stops accepting (idempotent): removes a Unix socket file and unlinks the ack names. In
/// a process forked after the listener was made, does nothing: they are the parent's.
///
/// # Safety
/// `l` is NULL or a live listener.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_listener_close(l: *const ipcez_listener) {
    call_or((), || {
        if let Ok(l) = listener_ref(l) {
            l.close();
        }
    })
}

/// Closes and frees the listener. NULL is fine. Must not race any other call on `l`. In a
/// process forked after the listener was made, nothing of the parent's is touched.
///
/// # Safety
/// `l` is NULL or a listener not yet freed, used by no other thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_listener_free(l: *mut ipcez_listener) {
    unsafe { ipcez_listener_close(l) };
    call_or((), || unsafe { free(l) })
}
