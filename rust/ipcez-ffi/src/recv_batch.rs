//! Receiving many messages per call: one call per batch instead of one (or two) per message,
//! for bindings where every call through the C ABI costs (Python's ctypes).

use ipcez::Batch;

use crate::boundary::{call, slice_mut, write_out};
use crate::error::{FfiError, ipcez_error, ipcez_result};
use crate::message::{hand_over, ipcez_message};
use crate::socket::{ipcez_socket, socket_ref, timeout_of};

/// Takes the next message, waiting up to `timeout_ms`, then the messages already waiting
/// behind it, without waiting, while they fit: at most `max_count` in all, copied back to
/// back into `buf` (`cap` bytes), message `i` being `lens[i]` bytes long; `*out_count` says
/// how many. A first message longer than `cap` is taken alone as a new message instead,
/// as by `ipcez_socket_recv`: `*out_count` is then 0 and `*out_msg` / `*out_data` /
/// `*out_len` give it (free it with `ipcez_message_free`); otherwise `*out_msg` is NULL.
/// `IPCEZ_RESULT_TIMEOUT` when no message came. The end of the connection is never part of
/// a batch: the next call reports it, as `ipcez_socket_recv` does.
///
/// When more than one message was copied, the caller holds messages that still count as
/// waiting: the descriptor of `ipcez_socket_fileno` stays readable, and a poller is not
/// told again, until `ipcez_socket_set_held` clears it (call that once the last of them
/// is handed on).
///
/// # Safety
/// `s` is NULL or a live socket; `buf` is valid for writes of `cap` bytes and `lens` for
/// `max_count` elements (NULL when that is 0); the out-pointers are valid for writes.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn ipcez_socket_recv_batch(
    s: *const ipcez_socket,
    buf: *mut u8,
    cap: usize,
    lens: *mut usize,
    max_count: usize,
    timeout_ms: u32,
    out_count: *mut usize,
    out_msg: *mut *mut ipcez_message,
    out_data: *mut *const u8,
    out_len: *mut usize,
    out_err: *mut *mut ipcez_error,
) -> ipcez_result {
    call(out_err, || {
        let s = socket_ref(s)?;
        // SAFETY: per the # Safety section.
        let (buf, lens) = unsafe { batch_slices(buf, cap, lens, max_count) }?;
        let batch = s
            .socket
            .recv_batch_blocking(buf, lens, timeout_of(timeout_ms))?;
        Ok(unsafe { hand_batch(batch, out_count, out_msg, out_data, out_len) })
    })
}

/// A batch receive's `buf` (`cap` bytes) and `lens` (`max_count` elements) as slices.
///
/// # Safety
/// `buf` is valid for writes of `cap` bytes and `lens` for `max_count` elements, for the
/// returned lifetime (either may be NULL when its length is 0).
pub(crate) unsafe fn batch_slices<'a>(
    buf: *mut u8,
    cap: usize,
    lens: *mut usize,
    max_count: usize,
) -> Result<(&'a mut [u8], &'a mut [usize]), FfiError> {
    // SAFETY: as this function's.
    unsafe {
        Ok((
            slice_mut(buf, cap, "buf")?,
            slice_mut(lens, max_count, "lens")?,
        ))
    }
}

/// Writes what a batch receive took to its out-pointers (see `ipcez_socket_recv_batch`).
///
/// # Safety
/// The out-pointers are valid for writes.
pub(crate) unsafe fn hand_batch(
    batch: Batch,
    out_count: *mut usize,
    out_msg: *mut *mut ipcez_message,
    out_data: *mut *const u8,
    out_len: *mut usize,
) -> ipcez_result {
    unsafe { write_out(out_msg, std::ptr::null_mut()) };
    match batch {
        Batch::TimedOut => ipcez_result::Timeout,
        Batch::Copied(n) => {
            unsafe { write_out(out_count, n) };
            ipcez_result::Ok
        }
        Batch::Whole(m) => {
            unsafe {
                write_out(out_count, 0);
                hand_over(m, out_msg, out_data, out_len);
            }
            ipcez_result::Ok
        }
    }
}

/// Tells the socket whether the caller holds messages it took but has not handed on yet
/// (`ipcez_socket_recv_batch` sets this when it copies more than one message; a binding
/// may also set it for a message it keeps back). While it does, they count as waiting: the
/// descriptor of `ipcez_socket_fileno` stays readable and a poller is not told again.
/// Clear it once the last of them is handed on.
///
/// # Safety
/// `s` is NULL or a live socket.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_socket_set_held(
    s: *const ipcez_socket,
    held: bool,
    out_err: *mut *mut ipcez_error,
) -> ipcez_result {
    call(out_err, || {
        socket_ref(s)?.socket.set_held(held);
        Ok(ipcez_result::Ok)
    })
}
