//! # ipcez-ffi: the C ABI of ipcez
//!
//! Conventions (the README's "C ABI" section says the same):
//! * Every export starts with `ipcez_`; handles are opaque, made by one call and freed by
//!   its `_free`, which accepts NULL.
//! * Bytes and strings go in as `(const uint8_t *ptr, size_t len)`; strings are UTF-8, not
//!   NUL-terminated. Borrowed inputs are not kept after the call returns.
//! * Fallible calls return an `ipcez_result` and, on `IPCEZ_RESULT_ERROR`, store a new
//!   `ipcez_error` in `*out_err` for the caller to free. Out-parameters are written only on
//!   success.
//! * Blocking calls take a `timeout_ms` (`UINT32_MAX` waits without limit) and return
//!   `IPCEZ_RESULT_TIMEOUT` when it runs out with nothing done, so a caller can wait in
//!   short slices and stay interruptible.
//! * No panic unwinds out: a panic becomes an `IPCEZ_ERROR_KIND_PANIC` error.
//! * Handles may be used from several threads at once, except that `_free` must not race
//!   any other call on the same handle.

mod boundary;
mod error;

use std::ffi::{c_char, c_void};
use std::sync::Mutex;
use std::thread::{JoinHandle, ThreadId};
use std::time::Duration;

use ipcez::{ConnectOptions, ListenOptions, Listener, Socket, Transport};

use boundary::{borrow, bytes, call, call_or, free, into_handle, text, write_out};
use error::FfiError;
pub use error::{ipcez_error, ipcez_error_field, ipcez_error_kind};

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

/// The transport of a resolution, socket or listener.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum ipcez_transport {
    /// Unix domain socket.
    Unix = 1,
    /// WebSocket (`ws://`, `wss://`).
    Websocket = 2,
    /// Windows named pipe.
    NamedPipe = 3,
}

impl From<Transport> for ipcez_transport {
    fn from(t: Transport) -> Self {
        match t {
            Transport::Unix => ipcez_transport::Unix,
            Transport::WebSocket => ipcez_transport::Websocket,
            Transport::NamedPipe => ipcez_transport::NamedPipe,
        }
    }
}

/// An owned byte buffer: a received message, or a string ipcez returns.
#[allow(non_camel_case_types)]
pub struct ipcez_message {
    _private: [u8; 0],
}

/// A connection.
#[allow(non_camel_case_types)]
pub struct ipcez_socket {
    _private: [u8; 0],
}

/// A listener.
#[allow(non_camel_case_types)]
pub struct ipcez_listener {
    _private: [u8; 0],
}

/// Called for each message and then once more with a non-NULL `err` when the connection
/// ends; after that call the handler is never called again and `userdata` is not touched.
/// `data` and `err` are borrowed for the duration of the call only.
#[allow(non_camel_case_types)]
pub type ipcez_handler_fn = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        data: *const u8,
        len: usize,
        err: *const ipcez_error,
    ),
>;

struct FfiSocket {
    socket: Socket,
    /// The handler thread, kept so `close` can wait for its last call.
    handler: Mutex<Option<(JoinHandle<()>, ThreadId)>>,
}

fn timeout_of(ms: u32) -> Option<Duration> {
    (ms != u32::MAX).then(|| Duration::from_millis(ms.into()))
}

fn message(data: Vec<u8>) -> *mut ipcez_message {
    into_handle::<Vec<u8>, ipcez_message>(data)
}

/// The library version, e.g. `"0.1.0"`: a static NUL-terminated string.
#[unsafe(no_mangle)]
pub extern "C" fn ipcez_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

// ---- errors -------------------------------------------------------------------------

/// The error's kind (an `ipcez_error_kind`); `IPCEZ_ERROR_KIND_NULL_PARAMETER` for NULL.
///
/// # Safety
/// `err` is NULL or a live error.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_error_code(err: *const ipcez_error) -> u32 {
    call_or(ipcez_error_kind::Panic as u32, || {
        // SAFETY: per the contract.
        unsafe { borrow::<FfiError, _>(err) }.map_or(ipcez_error_kind::NullParameter, |e| e.code)
            as u32
    })
}

/// The POSIX errno of the error where one applies (`ENOENT`, `ECONNREFUSED`,
/// `EADDRINUSE`, `EINVAL`, `ECONNRESET`, `ETIMEDOUT`, …), else 0.
///
/// # Safety
/// `err` is NULL or a live error.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_error_errno(err: *const ipcez_error) -> i32 {
    call_or(0, || {
        unsafe { borrow::<FfiError, _>(err) }.map_or(0, |e| e.errno)
    })
}

/// Points `*out_ptr` at the UTF-8 message and returns its length. The text is borrowed
/// from `err` and valid until `ipcez_error_free(err)`.
///
/// # Safety
/// `err` is NULL or a live error; `out_ptr` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_error_message(
    err: *const ipcez_error,
    out_ptr: *mut *const u8,
) -> usize {
    call_or(0, || {
        let Some(e) = (unsafe { borrow::<FfiError, _>(err) }) else {
            return 0;
        };
        unsafe { write_out(out_ptr, e.message.as_ptr()) };
        e.message.len()
    })
}

/// Like `ipcez_error_message` for a detail field (an `ipcez_error_field` value); length 0
/// when the error has no such detail or the field is unknown.
///
/// # Safety
/// `err` is NULL or a live error; `out_ptr` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_error_detail(
    err: *const ipcez_error,
    field: u32,
    out_ptr: *mut *const u8,
) -> usize {
    call_or(0, || {
        let Some(e) = (unsafe { borrow::<FfiError, _>(err) }) else {
            return 0;
        };
        let Some(text) = e.detail(field) else {
            return 0;
        };
        unsafe { write_out(out_ptr, text.as_ptr()) };
        text.len()
    })
}

/// Frees an error. NULL is fine; must not be called twice.
///
/// # Safety
/// `err` is NULL or an error not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_error_free(err: *mut ipcez_error) {
    call_or((), || unsafe { free::<FfiError, _>(err) })
}

// ---- messages -----------------------------------------------------------------------

/// The message's bytes, valid until `ipcez_message_free`. NULL for a NULL message.
///
/// # Safety
/// `msg` is NULL or a live message.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_message_data(msg: *const ipcez_message) -> *const u8 {
    call_or(std::ptr::null(), || {
        unsafe { borrow::<Vec<u8>, _>(msg) }.map_or(std::ptr::null(), |m| m.as_ptr())
    })
}

/// The message's length in bytes (0 for NULL).
///
/// # Safety
/// `msg` is NULL or a live message.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_message_len(msg: *const ipcez_message) -> usize {
    call_or(0, || {
        unsafe { borrow::<Vec<u8>, _>(msg) }.map_or(0, |m| m.len())
    })
}

/// Frees a message. NULL is fine; must not be called twice.
///
/// # Safety
/// `msg` is NULL or a message not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_message_free(msg: *mut ipcez_message) {
    call_or((), || unsafe { free::<Vec<u8>, _>(msg) })
}

// ---- resolution ---------------------------------------------------------------------

/// Resolves an endpoint without connecting: the transport (an `ipcez_transport`) and the
/// normalized address as a new message.
///
/// # Safety
/// `endpoint` is valid for `endpoint_len` bytes; out-pointers are valid for writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_resolve(
    endpoint: *const u8,
    endpoint_len: usize,
    out_transport: *mut u32,
    out_address: *mut *mut ipcez_message,
    out_err: *mut *mut ipcez_error,
) -> ipcez_result {
    call(out_err, || {
        let endpoint = unsafe { text(endpoint, endpoint_len, "endpoint") }?;
        let r = ipcez::resolve(endpoint)?;
        unsafe {
            write_out(out_transport, ipcez_transport::from(r.transport) as u32);
            write_out(out_address, message(r.address.into_bytes()));
        }
        Ok(ipcez_result::Ok)
    })
}

/// The `(data_ready, data_acked)` names of an endpoint's ack protocol, as two new messages.
///
/// # Safety
/// As for `ipcez_resolve`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_ack_names(
    endpoint: *const u8,
    endpoint_len: usize,
    out_ready: *mut *mut ipcez_message,
    out_acked: *mut *mut ipcez_message,
    out_err: *mut *mut ipcez_error,
) -> ipcez_result {
    call(out_err, || {
        let endpoint = unsafe { text(endpoint, endpoint_len, "endpoint") }?;
        let (ready, acked) = ipcez::ack_names(endpoint)?;
        unsafe {
            write_out(out_ready, message(ready.into_bytes()));
            write_out(out_acked, message(acked.into_bytes()));
        }
        Ok(ipcez_result::Ok)
    })
}

// ---- sockets ------------------------------------------------------------------------

fn connect_options(ack_timeout_ms: u32) -> ConnectOptions {
    ConnectOptions::default().ack_timeout(Duration::from_millis(ack_timeout_ms.into()))
}

fn new_socket(socket: Socket) -> *mut ipcez_socket {
    into_handle::<FfiSocket, ipcez_socket>(FfiSocket {
        socket,
        handler: Mutex::new(None),
    })
}

/// Connects to an endpoint (blocking; a WebSocket handshake is bounded by 30 s). Local
/// sends on the new socket wait up to `ack_timeout_ms` for the recipient's ack.
///
/// # Safety
/// As for `ipcez_resolve`.
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

fn socket_ref<'a>(s: *const ipcez_socket) -> Result<&'a FfiSocket, FfiError> {
    // SAFETY: every export's contract makes `s` NULL or a live socket.
    unsafe { borrow::<FfiSocket, _>(s) }.ok_or_else(|| FfiError::null_parameter("socket"))
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

/// The endpoint the socket was connected to (for accepted sockets, the listener's
/// address), as a new message; NULL for NULL.
///
/// # Safety
/// `s` is NULL or a live socket.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_socket_endpoint(s: *const ipcez_socket) -> *mut ipcez_message {
    call_or(std::ptr::null_mut(), || {
        socket_ref(s).map_or(std::ptr::null_mut(), |s| {
            message(s.socket.endpoint().as_bytes().to_vec())
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
/// and, on local transports, signals "data ready", then waits up to `wait_ms` for the
/// recipient's ack: `IPCEZ_RESULT_OK` when it came (WebSocket: once the message is sent),
/// `IPCEZ_RESULT_TIMEOUT` when the message is written but not acked yet — go on with
/// `ipcez_socket_wait_ack`. Pass 0 to only write. `data` is not kept after the call.
///
/// # Safety
/// `s` is NULL or a live socket; `data` is valid for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_socket_send(
    s: *const ipcez_socket,
    data: *const u8,
    len: usize,
    wait_ms: u32,
    out_err: *mut *mut ipcez_error,
) -> ipcez_result {
    call(out_err, || {
        let s = socket_ref(s)?;
        let data = unsafe { bytes(data, len) }?;
        s.socket.send_frame_blocking(data)?;
        // One call for the common case, where the ack comes within the first slice.
        let wait = timeout_of(wait_ms).unwrap_or(Duration::MAX);
        Ok(match s.socket.wait_ack_blocking(wait)? {
            true => ipcez_result::Ok,
            false => ipcez_result::Timeout,
        })
    })
}

/// Waits up to `timeout_ms` for one "data acked" token after `ipcez_socket_send`:
/// `IPCEZ_RESULT_OK` when it came (at once on WebSocket, which has no acks),
/// `IPCEZ_RESULT_TIMEOUT` when the slice ran out (the caller enforces the overall ack
/// timeout), an error when the connection ended meanwhile.
///
/// # Safety
/// `s` is NULL or a live socket.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_socket_wait_ack(
    s: *const ipcez_socket,
    timeout_ms: u32,
    out_err: *mut *mut ipcez_error,
) -> ipcez_result {
    call(out_err, || {
        let s = socket_ref(s)?;
        let timeout = timeout_of(timeout_ms).unwrap_or(Duration::MAX);
        Ok(match s.socket.wait_ack_blocking(timeout)? {
            true => ipcez_result::Ok,
            false => ipcez_result::Timeout,
        })
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
                unsafe {
                    write_out(out_data, m.as_ptr());
                    write_out(out_len, m.len());
                    write_out(out_msg, message(m));
                }
                ipcez_result::Ok
            }
            None => ipcez_result::Timeout,
        })
    })
}

thread_local! {
    /// True on ipcez handler threads: a close from one of them never waits for a handler,
    /// so two handlers closing each other's sockets cannot deadlock.
    static ON_HANDLER_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// `userdata` is only handed back to the callback on the handler thread.
struct Userdata(*mut c_void);
// SAFETY: ipcez never dereferences userdata; the caller chose to receive it on another
// thread by registering a handler.
unsafe impl Send for Userdata {}

/// Registers `cb` as the socket's message handler, called on a native thread of its own:
/// first with the messages already received (in order), then with each new one, then once
/// with the error that ended the connection. While a handler is set `ipcez_socket_recv`
/// fails; a second registration fails.
///
/// # Safety
/// `s` is NULL or a live socket; `cb` stays callable, and `userdata` valid for it, until
/// the final call (the one with a non-NULL `err`) has returned.
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
        let userdata = Userdata(userdata);
        // Held from spawn to store, so a concurrent close finds the thread and waits for it.
        let mut slot = s.handler.lock().unwrap_or_else(|p| p.into_inner());
        let thread = s.socket.message_handler_thread(move |next| {
            ON_HANDLER_THREAD.with(|on| on.set(true));
            let userdata = &userdata;
            match next {
                // SAFETY: per the contract, cb and userdata are valid until the final call.
                Ok(m) => unsafe { cb(userdata.0, m.as_ptr(), m.len(), std::ptr::null()) },
                Err(e) => {
                    let e = FfiError::from(e);
                    let e_ptr: *const FfiError = &e;
                    unsafe { cb(userdata.0, std::ptr::null(), 0, e_ptr.cast()) }
                }
            }
        })?;
        let id = thread.thread().id();
        *slot = Some((thread, id));
        Ok(ipcez_result::Ok)
    })
}

/// Closes the connection (idempotent). If a handler is set, waits until its final call has
/// returned, unless called from inside a handler (this socket's or another's: two handlers
/// closing each other's sockets must not wait for each other).
///
/// # Safety
/// `s` is NULL or a live socket.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_socket_close(s: *const ipcez_socket) {
    call_or((), || {
        let Ok(s) = socket_ref(s) else { return };
        s.socket.close();
        let handler = s.handler.lock().unwrap_or_else(|p| p.into_inner()).take();
        let on_a_handler = ON_HANDLER_THREAD.with(|on| on.get());
        if let Some((thread, id)) = handler
            && id != std::thread::current().id()
            && !on_a_handler
        {
            let _ = thread.join();
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

/// Closes (as `ipcez_socket_close`) and frees the socket. NULL is fine. Must not race any
/// other call on `s`, and must not be called twice.
///
/// # Safety
/// `s` is NULL or a socket not yet freed, used by no other thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_socket_free(s: *mut ipcez_socket) {
    unsafe { ipcez_socket_close(s) };
    call_or((), || unsafe { free::<FfiSocket, _>(s) })
}

// ---- listeners ----------------------------------------------------------------------

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
        };
        let listener = opts.listen_blocking(endpoint)?;
        unsafe {
            write_out(
                out_listener,
                into_handle::<Listener, ipcez_listener>(listener),
            )
        };
        Ok(ipcez_result::Ok)
    })
}

fn listener_ref<'a>(l: *const ipcez_listener) -> Result<&'a Listener, FfiError> {
    // SAFETY: every export's contract makes `l` NULL or a live listener.
    unsafe { borrow::<Listener, _>(l) }.ok_or_else(|| FfiError::null_parameter("listener"))
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
            message(l.address().as_bytes().to_vec())
        })
    })
}

/// Takes the next connection, waiting up to `timeout_ms`. After close: a connection-lost
/// error.
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
        Ok(match l.accept_blocking(timeout_of(timeout_ms))? {
            Some(socket) => {
                unsafe { write_out(out_socket, new_socket(socket)) };
                ipcez_result::Ok
            }
            None => ipcez_result::Timeout,
        })
    })
}

/// Stops accepting (idempotent): removes a Unix socket file and unlinks the ack names.
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

/// Closes and frees the listener. NULL is fine. Must not race any other call on `l`.
///
/// # Safety
/// `l` is NULL or a listener not yet freed, used by no other thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_listener_free(l: *mut ipcez_listener) {
    unsafe { ipcez_listener_close(l) };
    call_or((), || unsafe { free::<Listener, _>(l) })
}
