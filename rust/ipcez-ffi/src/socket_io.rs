//! Calls for event loops and batches: readiness descriptors, receiving into caller
//! memory, sends that never wait, and several messages written back to back.

use std::cell::Cell;
use std::time::{Duration, Instant};

use ipcez::{SentMark, SocketError};

use crate::boundary::{bytes, call, slice_mut, write_out};
use crate::error::{FfiError, ipcez_error, ipcez_result};
use crate::listener::{ipcez_listener, listener_ref};
use crate::socket::{FfiSocket, ipcez_socket, socket_ref, timeout_of};

thread_local! {
    /// The messages this thread sent with `ipcez_socket_send_many` whose acks it still
    /// awaits: (socket id, how many, deadline, the last of them). The deadline moves on
    /// with every ack; a send_many on another socket replaces an abandoned batch.
    static PENDING_MANY: Cell<Option<(u64, usize, Instant, SentMark)>> = const { Cell::new(None) };
}

#[cfg(unix)]
fn fd_of(fd: std::io::Result<std::os::fd::RawFd>) -> Result<i32, FfiError> {
    fd.map_err(|e| FfiError::from(ipcez::SocketError::Io(e)))
}

#[cfg(not(unix))]
fn fd_of(_: ()) -> Result<i32, FfiError> {
    Err(FfiError::from(ipcez::SocketError::Io(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "fileno is only available on Unix",
    ))))
}

/// A descriptor that is readable while a message (or the end of the connection) waits to
/// be taken, for `poll`/`epoll`/`select` and event loops: when it is readable,
/// `ipcez_socket_recv` (or `ipcez_socket_recv_into`) with `timeout_ms` 0 returns at once
/// with the message or the error. Owned by the socket: do not read, write or close it; it
/// stays valid until `ipcez_socket_free`. Unix only (an error elsewhere).
///
/// # Safety
/// `s` is NULL or a live socket; `out_fd` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_socket_fileno(
    s: *const ipcez_socket,
    out_fd: *mut i32,
    out_err: *mut *mut ipcez_error,
) -> ipcez_result {
    call(out_err, || {
        let s = socket_ref(s)?;
        #[cfg(unix)]
        let fd = fd_of(s.socket.fileno())?;
        #[cfg(not(unix))]
        let fd = fd_of({
            let _ = s;
        })?;
        unsafe { write_out(out_fd, fd) };
        Ok(ipcez_result::Ok)
    })
}

/// Like `ipcez_socket_fileno` for a listener: readable while a connection waits to be
/// accepted (then `ipcez_listener_accept` with `timeout_ms` 0 returns it) or once the
/// listener is closed.
///
/// # Safety
/// `l` is NULL or a live listener; `out_fd` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_listener_fileno(
    l: *const ipcez_listener,
    out_fd: *mut i32,
    out_err: *mut *mut ipcez_error,
) -> ipcez_result {
    call(out_err, || {
        let l = listener_ref(l)?;
        #[cfg(unix)]
        let fd = fd_of(l.fileno())?;
        #[cfg(not(unix))]
        let fd = fd_of({
            let _ = l;
        })?;
        unsafe { write_out(out_fd, fd) };
        Ok(ipcez_result::Ok)
    })
}

/// Takes the next message into `buf` (capacity `cap` bytes), waiting up to `timeout_ms`,
/// and writes its length to `*out_len`. When the message is longer than `cap`, nothing is
/// written to `buf` and the message is kept for the next receive: the result is still
/// `IPCEZ_RESULT_OK`, with `*out_len > cap` giving the size needed. Errors as for
/// `ipcez_socket_recv`.
///
/// # Safety
/// `s` is NULL or a live socket; `buf` is valid for writes of `cap` bytes (NULL when
/// `cap` is 0); `out_len` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_socket_recv_into(
    s: *const ipcez_socket,
    buf: *mut u8,
    cap: usize,
    timeout_ms: u32,
    out_len: *mut usize,
    out_err: *mut *mut ipcez_error,
) -> ipcez_result {
    call(out_err, || {
        let s = socket_ref(s)?;
        // SAFETY: per the # Safety section, `buf` is valid for writes of `cap` bytes.
        let buf = unsafe { slice_mut(buf, cap, "buf") }?;
        Ok(
            match s.socket.recv_into_blocking(buf, timeout_of(timeout_ms))? {
                Some(n) => {
                    unsafe { write_out(out_len, n) };
                    ipcez_result::Ok
                }
                None => ipcez_result::Timeout,
            },
        )
    })
}

/// Starts a send without waiting (for an event loop's thread). `IPCEZ_RESULT_OK`: the
/// message was handed over — on a Unix socket what the socket takes now is written on this
/// thread and the rest of the frame by the library in the background, in order behind
/// earlier such frames (the frame stays whole, or the connection ends), and "data ready"
/// is signalled once it is complete: then await the ack (`ipcez_socket_expect_acks`); on a
/// WebSocket it was written or is being flushed (no ack). `IPCEZ_RESULT_TIMEOUT`: nothing
/// was sent because that would mean waiting (frames already waiting for a Unix socket hold
/// their 64 MiB bound, a WebSocket is busy with another send, a named pipe): send it with
/// `ipcez_socket_send` from a thread that may wait.
///
/// # Safety
/// `s` is NULL or a live socket; `data` is valid for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_socket_start_send(
    s: *const ipcez_socket,
    data: *const u8,
    len: usize,
    out_err: *mut *mut ipcez_error,
) -> ipcez_result {
    call(out_err, || {
        let s = socket_ref(s)?;
        let data = unsafe { bytes(data, len) }?;
        Ok(match s.socket.start_send(data)? {
            true => ipcez_result::Ok,
            false => ipcez_result::Timeout,
        })
    })
}

/// Sends `count` messages as frames written back to back, with no other sender's frame
/// between them, and signals "data ready" once per message. The messages lie one after
/// the other in `data` (`data_len` bytes in all); message `i` is `lens[i]` bytes long, and
/// the lengths must add up to `data_len`. Every message is checked (at most 4 MiB) before
/// anything is written. Does not wait for the acks: wait for them on the same thread with
/// `ipcez_socket_wait_acks`, which counts them together with those of earlier
/// `ipcez_socket_send_many` calls on this socket still awaiting theirs.
///
/// # Safety
/// `s` is NULL or a live socket; `data` is valid for `data_len` bytes and `lens` for
/// `count` elements (either may be NULL when its length is 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_socket_send_many(
    s: *const ipcez_socket,
    data: *const u8,
    data_len: usize,
    lens: *const usize,
    count: usize,
    out_err: *mut *mut ipcez_error,
) -> ipcez_result {
    call(out_err, || {
        let s = socket_ref(s)?;
        let msgs = unsafe { split(data, data_len, lens, count) }?;
        s.socket.send_many_frames_blocking(&msgs)?;
        // Taken now, it names our last message or a later one.
        let mark = s.socket.sent_mark();
        let before = match PENDING_MANY.with(|p| p.get()) {
            Some((id, n, _, _)) if id == s.id => n,
            _ => 0,
        };
        let deadline = deadline_of(s);
        PENDING_MANY.with(|p| p.set(Some((s.id, before + count, deadline, mark))));
        Ok(ipcez_result::Ok)
    })
}

fn deadline_of(s: &FfiSocket) -> Instant {
    let now = Instant::now();
    now.checked_add(s.socket.ack_timeout())
        .unwrap_or(now + Duration::from_secs(u32::MAX.into()))
}

/// `ipcez_socket_send_many` that never waits, with the results of
/// `ipcez_socket_start_send` (several messages on a WebSocket always give
/// `IPCEZ_RESULT_TIMEOUT`); the acks are awaited with `ipcez_socket_expect_acks`.
///
/// # Safety
/// As for `ipcez_socket_send_many`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_socket_start_send_many(
    s: *const ipcez_socket,
    data: *const u8,
    data_len: usize,
    lens: *const usize,
    count: usize,
    out_err: *mut *mut ipcez_error,
) -> ipcez_result {
    call(out_err, || {
        let s = socket_ref(s)?;
        let msgs = unsafe { split(data, data_len, lens, count) }?;
        Ok(match s.socket.start_send_many(&msgs)? {
            true => ipcez_result::Ok,
            false => ipcez_result::Timeout,
        })
    })
}

/// The messages of a send-many call.
///
/// # Safety
/// As for `ipcez_socket_send_many`.
unsafe fn split<'a>(
    data: *const u8,
    data_len: usize,
    lens: *const usize,
    count: usize,
) -> Result<Vec<&'a [u8]>, FfiError> {
    let data = unsafe { bytes(data, data_len) }?;
    let lens: &[usize] = match count {
        0 => &[],
        _ if lens.is_null() => return Err(FfiError::null_parameter("lens")),
        // SAFETY: per the # Safety section, `lens` holds `count` elements.
        _ => unsafe { std::slice::from_raw_parts(lens, count) },
    };
    let mut msgs = Vec::with_capacity(count);
    let mut rest = data;
    for &n in lens {
        let Some((msg, after)) = rest.split_at_checked(n) else {
            return Err(FfiError::invalid_input(
                "the message lengths add up to more than data_len".into(),
            ));
        };
        msgs.push(msg);
        rest = after;
    }
    if !rest.is_empty() {
        return Err(FfiError::invalid_input(
            "the message lengths add up to less than data_len".into(),
        ));
    }
    Ok(msgs)
}

/// Waits, at most `slice_ms`, until no more than `keep` of the messages this thread sent
/// on `s` with `ipcez_socket_send_many` still await their ack (0: all acked). Returns
/// `IPCEZ_RESULT_OK` then; `IPCEZ_RESULT_TIMEOUT` when the slice ran out first (call
/// again: short slices keep the caller interruptible); an error of kind
/// `IPCEZ_ERROR_KIND_RECIPIENT_ACK_TIMEOUT` once the socket's ack timeout passed without
/// any ack (each ack gives the rest a new ack timeout; the acks of this batch still
/// awaited are then forgotten); a connection-lost error when the connection ended.
///
/// # Safety
/// `s` is NULL or a live socket.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_socket_wait_acks(
    s: *const ipcez_socket,
    keep: usize,
    slice_ms: u32,
    out_err: *mut *mut ipcez_error,
) -> ipcez_result {
    call(out_err, || {
        let s = socket_ref(s)?;
        let (mut left, mut deadline, mark) = match PENDING_MANY.with(|p| p.get()) {
            Some((id, n, d, m)) if id == s.id => (n, d, m),
            _ => (0, Instant::now(), s.socket.sent_mark()),
        };
        let slice_end = timeout_of(slice_ms).and_then(|t| Instant::now().checked_add(t));
        let outcome = loop {
            if left <= keep {
                break Ok(ipcez_result::Ok);
            }
            let now = Instant::now();
            let until = slice_end.map_or(deadline, |e| e.min(deadline));
            // The oldest message still awaited is `left - 1` places before the last.
            let oldest = mark.before(left - 1);
            match s
                .socket
                .wait_ack_of_blocking(oldest, until.saturating_duration_since(now))
            {
                Ok(true) => {
                    left -= 1;
                    deadline = deadline_of(s);
                }
                Ok(false) if Instant::now() >= deadline => {
                    left = 0;
                    let mut e = FfiError::from(SocketError::RecipientAckTimeout);
                    let secs = s.socket.ack_timeout().as_secs_f64();
                    e.message = format!("{} (ack timeout: {secs} s)", e.message);
                    break Err(e);
                }
                Ok(false) => break Ok(ipcez_result::Timeout),
                Err(e) => {
                    left = 0;
                    break Err(e.into());
                }
            }
        };
        PENDING_MANY.with(|p| p.set((left > 0).then_some((s.id, left, deadline, mark))));
        outcome
    })
}
