//! `ipcez_socket`: connecting, sending (with the ack wait and its deadline), receiving,
//! message handlers and closing.

use std::cell::RefCell;
use std::ffi::c_void;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipcez::{ConnectOptions, Socket, SocketError};

use crate::ack_waiter::AckWaits;
use crate::boundary::{
    Castable, ProcessBound, bytes, call, call_or, free, into_handle, text, try_borrow, write_out,
};
use crate::error::{FfiError, ipcez_error, ipcez_result};
use crate::handler::{HandlerThread, ipcez_handler_fn};
use crate::message::{hand_over, ipcez_message, new_message};
use crate::resolve::ipcez_transport;

/// A connection.
#[allow(non_camel_case_types)]
pub struct ipcez_socket {
    _private: [u8; 0],
}

impl Castable for ipcez_socket {
    type Rust = ProcessBound<FfiSocket>;
}

/// The Rust value behind an `ipcez_socket` handle.
pub(crate) struct FfiSocket {
    pub(crate) socket: Socket,
    /// Acks an event loop waits for (see `ipcez_socket_expect_acks`).
    pub(crate) acks: Arc<AckWaits>,
    /// Tells this socket apart from any other, also one later made at the same address.
    pub(crate) id: u64,
    /// The handler thread, kept so `close` can wait for its last call.
    handler: Mutex<Option<HandlerThread>>,
}

thread_local! {
    /// The sends this thread started and whose acks it still awaits: (socket id, deadline).
    /// Usually one, but a send from a signal handler can run while an outer send on
    /// another socket waits: each socket keeps its own entry.
    static PENDING_ACK: RefCell<Vec<(u64, Instant)>> = const { RefCell::new(Vec::new()) };
}

/// Most sends a thread can leave awaiting their acks (abandoned ones: the oldest goes).
const MAX_PENDING: usize = 16;

/// The deadline of the send on socket `id` this thread awaits the ack of, now taken.
fn take_pending(id: u64) -> Option<Instant> {
    PENDING_ACK.with(|p| {
        let mut p = p.borrow_mut();
        let i = p.iter().position(|&(s, _)| s == id)?;
        Some(p.remove(i).1)
    })
}

fn set_pending(id: u64, deadline: Instant) {
    PENDING_ACK.with(|p| {
        let mut p = p.borrow_mut();
        p.retain(|&(s, _)| s != id);
        if p.len() >= MAX_PENDING {
            p.remove(0);
        }
        p.push((id, deadline));
    });
}

/// `timeout_ms` as a duration; `UINT32_MAX` means no limit.
pub(crate) fn timeout_of(ms: u32) -> Option<Duration> {
    (ms != u32::MAX).then(|| Duration::from_millis(ms.into()))
}

pub(crate) fn connect_options(ack_timeout_ms: u32) -> ConnectOptions {
    ConnectOptions::default().ack_timeout(Duration::from_millis(ack_timeout_ms.into()))
}

/// Hands `socket` to the caller as a new handle.
pub(crate) fn new_socket(socket: Socket) -> *mut ipcez_socket {
    static NEXT_ID: AtomicU64 = AtomicU64::new(1);
    into_handle::<ipcez_socket>(ProcessBound::new(FfiSocket {
        socket,
        acks: Arc::default(),
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        handler: Mutex::new(None),
    }))
}

impl FfiSocket {
    /// Waits for the ack of this thread's send until `deadline`, at most `slice_ms`:
    /// OK, TIMEOUT (still pending: remembered for `ipcez_socket_wait_ack`), or the
    /// recipient-ack-timeout error once the deadline has passed.
    fn wait_ack(&self, deadline: Instant, slice_ms: u32) -> Result<ipcez_result, FfiError> {
        take_pending(self.id);
        let left = deadline.saturating_duration_since(Instant::now());
        let slice = timeout_of(slice_ms).map_or(left, |s| s.min(left));
        if self.socket.wait_ack_blocking(slice)? {
            return Ok(ipcez_result::Ok);
        }
        if Instant::now() >= deadline {
            let mut e = FfiError::from(SocketError::RecipientAckTimeout);
            let secs = self.socket.ack_timeout().as_secs_f64();
            e.message = format!("{} (ack timeout: {secs} s)", e.message);
            return Err(e);
        }
        set_pending(self.id, deadline);
        Ok(ipcez_result::Timeout)
    }
}

/// Connects to an endpoint (blocking; a WebSocket handshake is bounded by 30 s). Local
/// sends on the new socket wait up to `ack_timeout_ms` for the recipient's ack.
///
/// # Safety
/// `endpoint` is valid for `endpoint_len` bytes; out-pointers are valid for writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_connect(
    endpoint: *const u8,
    endpoint_len: usize,
    ack_timeout_ms: u32,
    out_socket: *mut *mut ipcez_socket,
    out_err: *mut *mut ipcez_error,
) -> ipcez_result {
    call(out_err, || {
        let endpoint = unsafe { text(endpoint, endpoint_len, "endpoint") }?;
        let socket = connect_options(ack_timeout_ms).connect_blocking(endpoint)?;
        unsafe { write_out(out_socket, new_socket(socket)) };
        Ok(ipcez_result::Ok)
    })
}

pub(crate) fn socket_ref<'a>(s: *const ipcez_socket) -> Result<&'a FfiSocket, FfiError> {
    // SAFETY: every export's `# Safety` section makes `s` NULL or a live socket.
    unsafe { try_borrow(s, "socket") }?.get("socket")
}

/// The socket's transport (an `ipcez_transport`); 0 for NULL.
///
/// # Safety
/// `s` is NULL or a live socket.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_socket_transport(s: *const ipcez_socket) -> u32 {
    call_or(0, || {
        socket_ref(s).map_or(0, |s| ipcez_transport::from(s.socket.transport()) as u32)
    })
}

/// The WebSocket subprotocol the handshake agreed on, as a new message; NULL when none was
/// (always on local transports) and for NULL.
///
/// # Safety
/// `s` is NULL or a live socket.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_socket_subprotocol(s: *const ipcez_socket) -> *mut ipcez_message {
    call_or(std::ptr::null_mut(), || {
        let protocol = socket_ref(s).ok().and_then(|s| s.socket.subprotocol());
        protocol.map_or(std::ptr::null_mut(), |p| new_message(p.as_bytes().to_vec()))
    })
}

/// The endpoint the socket was connected to (for accepted sockets, the listener's
/// address), as a new message; NULL for NULL.
///
/// # Safety
/// `s` is NULL or a live socket.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_socket_endpoint(s: *const ipcez_socket) -> *mut ipcez_message {
    call_or(std::ptr::null_mut(), || {
        socket_ref(s).map_or(std::ptr::null_mut(), |s| {
            new_message(s.socket.endpoint().as_bytes().to_vec())
        })
    })
}

/// The socket's ack timeout in milliseconds.
///
/// # Safety
/// `s` is NULL or a live socket.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_socket_ack_timeout_ms(s: *const ipcez_socket) -> u32 {
    call_or(0, || {
        socket_ref(s).map_or(0, |s| {
            s.socket.ack_timeout().as_millis().min(u32::MAX as u128) as u32
        })
    })
}

/// Writes one message as one whole frame (frames from several threads never interleave)
/// and, on local transports, signals "data ready"; then waits for the recipient's ack, at
/// most `slice_ms` now and at most the socket's ack timeout in all (counted from this
/// call). Returns `IPCEZ_RESULT_OK` when the ack came (WebSocket: once the message is
/// sent); `IPCEZ_RESULT_TIMEOUT` when the message is written and the slice ran out with
/// the ack still pending: go on with `ipcez_socket_wait_ack` on the same thread; an error
/// of kind `IPCEZ_ERROR_KIND_RECIPIENT_ACK_TIMEOUT` once the ack timeout has passed.
/// `slice_ms` 0 only writes (and takes an ack that is already there); `UINT32_MAX` waits
/// up to the whole ack timeout. `data` is not kept after the call.
///
/// # Safety
/// `s` is NULL or a live socket; `data` is valid for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_socket_send(
    s: *const ipcez_socket,
    data: *const u8,
    len: usize,
    slice_ms: u32,
    out_err: *mut *mut ipcez_error,
) -> ipcez_result {
    call(out_err, || {
        let s = socket_ref(s)?;
        let data = unsafe { bytes(data, len) }?;
        let now = Instant::now();
        let deadline = now
            .checked_add(s.socket.ack_timeout())
            .unwrap_or(now + Duration::from_secs(u32::MAX.into()));
        s.socket.send_frame_blocking(data)?;
        // One call for the common case, where the ack comes within the first slice.
        s.wait_ack(deadline, slice_ms)
    })
}

/// Goes on waiting, at most `slice_ms`, for the ack of the message this thread last sent
/// on `s` with `ipcez_socket_send` (which returned `IPCEZ_RESULT_TIMEOUT`). Returns
/// `IPCEZ_RESULT_OK` when the ack came; `IPCEZ_RESULT_TIMEOUT` when the slice ran out
/// within the ack timeout (call again: short slices keep the caller interruptible); an
/// error of kind `IPCEZ_ERROR_KIND_RECIPIENT_ACK_TIMEOUT` once the socket's ack timeout,
/// counted from the send, has passed; a connection-lost error when the connection ended
/// meanwhile; an I/O error (EINVAL) when this thread has no send awaiting its ack on `s`.
///
/// # Safety
/// `s` is NULL or a live socket.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_socket_wait_ack(
    s: *const ipcez_socket,
    slice_ms: u32,
    out_err: *mut *mut ipcez_error,
) -> ipcez_result {
    call(out_err, || {
        let s = socket_ref(s)?;
        match take_pending(s.id) {
            Some(deadline) => s.wait_ack(deadline, slice_ms),
            None => Err(FfiError::invalid_input(
                "ipcez: no message sent on this thread awaits its ack on this socket; \
                 call ipcez_socket_wait_ack only after ipcez_socket_send returned \
                 IPCEZ_RESULT_TIMEOUT"
                    .into(),
            )),
        }
    })
}

/// Takes the next message, waiting up to `timeout_ms`, as a new message whose bytes are
/// also given as `*out_data` / `*out_len` (valid until `ipcez_message_free`), saving two
/// calls per message. After the connection ended: the error that ended it, once, then a
/// connection-lost error on every call.
///
/// # Safety
/// `s` is NULL or a live socket; the out-pointers are valid for writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_socket_recv(
    s: *const ipcez_socket,
    timeout_ms: u32,
    out_msg: *mut *mut ipcez_message,
    out_data: *mut *const u8,
    out_len: *mut usize,
    out_err: *mut *mut ipcez_error,
) -> ipcez_result {
    call(out_err, || {
        let s = socket_ref(s)?;
        Ok(match s.socket.recv_blocking(timeout_of(timeout_ms))? {
            Some(m) => {
                unsafe { hand_over(m, out_msg, out_data, out_len) };
                ipcez_result::Ok
            }
            None => ipcez_result::Timeout,
        })
    })
}

/// Registers `cb` as the socket's message handler, called on a native thread of its own:
/// first with the messages already received (in order), then with each new one, then once
/// with the error that ended the connection. While a handler is set `ipcez_socket_recv`
/// fails; a second registration fails. A close that gives up waiting for a stuck call
/// (see `ipcez_socket_close`) ends the calls early: there is then no final call.
///
/// # Safety
/// `s` is NULL or a live socket; `cb` stays callable, and `userdata` valid for it, until
/// the final call (the one with a non-NULL `err`) has returned, or, when a close gave up
/// waiting, until the call then running has returned.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_socket_set_handler(
    s: *const ipcez_socket,
    cb: ipcez_handler_fn,
    userdata: *mut c_void,
    out_err: *mut *mut ipcez_error,
) -> ipcez_result {
    call(out_err, || {
        let s = socket_ref(s)?;
        let cb = cb.ok_or_else(|| FfiError::null_parameter("handler callback"))?;
        // Held from start to store, so a concurrent close finds the thread and waits for it.
        let mut slot = s.handler.lock().unwrap_or_else(|p| p.into_inner());
        // SAFETY: per the `# Safety` section.
        *slot = Some(unsafe { HandlerThread::start(&s.socket, cb, userdata) }?);
        Ok(ipcez_result::Ok)
    })
}

/// Closes the connection (idempotent). If a handler is set, waits until its final call has
/// returned, but at most 1 s: a handler call still running then is left to return on its
/// own and the handler is not called again. Never waits when called on a handler thread
/// (this socket's or another's: two handlers closing each other's sockets must not wait for
/// each other). In a process forked after the socket was made, does nothing: the
/// connection is the parent's.
///
/// # Safety
/// `s` is NULL or a live socket.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_socket_close(s: *const ipcez_socket) {
    call_or((), || {
        let Ok(s) = socket_ref(s) else { return };
        s.socket.close();
        let handler = s.handler.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(handler) = handler {
            handler.join_unless_on_handler();
        }
    })
}

/// True once the socket is closed or its connection lost.
///
/// # Safety
/// `s` is NULL or a live socket.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_socket_is_closed(s: *const ipcez_socket) -> bool {
    call_or(true, || {
        socket_ref(s).map_or(true, |s| s.socket.is_closed())
    })
}

/// Closes (as `ipcez_socket_close`, so it never waits when called on a handler thread)
/// and frees the socket. NULL is fine. Must not race any other call on `s`, and must not
/// be called twice. In a process forked after the socket was made, nothing of the
/// parent's connection is touched (its memory is leaked instead).
///
/// # Safety
/// `s` is NULL or a socket not yet freed, used by no other thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_socket_free(s: *mut ipcez_socket) {
    unsafe { ipcez_socket_close(s) };
    call_or((), || unsafe { free(s) })
}
