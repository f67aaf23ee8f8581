//! Option handles for `ipcez_connect_with` and `ipcez_listen_with`: settings that do not
//! fit a flat argument list (lists of origins and subprotocols) and may grow without
//! changing any signature. Made by `_new` with the documented defaults, changed by
//! setters, freed by `_free`; a call that takes them only reads them.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use ipcez::{ConnectOptions, ListenOptions};

use crate::boundary::{
    Castable, ProcessBound, call, call_or, free, into_handle, text, try_borrow, write_out,
};
use crate::error::{FfiError, ipcez_error, ipcez_result};
use crate::listener::ipcez_listener;
use crate::socket::{ipcez_socket, new_socket};

/// Settings of a connection (`ipcez_connect_with`).
#[allow(non_camel_case_types)]
pub struct ipcez_connect_options {
    _private: [u8; 0],
}

/// Settings of a listener (`ipcez_listen_with`).
#[allow(non_camel_case_types)]
pub struct ipcez_listen_options {
    _private: [u8; 0],
}

type Connect = Mutex<ConnectOptions>;
type Listen = Mutex<ListenOptions>;

impl Castable for ipcez_connect_options {
    type Rust = Connect;
}

impl Castable for ipcez_listen_options {
    type Rust = Listen;
}

fn connect_ref<'a>(o: *const ipcez_connect_options) -> Result<&'a Connect, FfiError> {
    // SAFETY: every export's `# Safety` section makes `o` NULL or live options.
    unsafe { try_borrow(o, "options") }
}

fn listen_ref<'a>(o: *const ipcez_listen_options) -> Result<&'a Listen, FfiError> {
    // SAFETY: as above.
    unsafe { try_borrow(o, "options") }
}

/// A subprotocol name must be an HTTP token (RFC 7230): printable ASCII without
/// separators, since it travels in the `Sec-WebSocket-Protocol` header.
fn subprotocol(name: &str) -> Result<String, FfiError> {
    let separator = |c: char| "()<>@,;:\\\"/[]?={} \t".contains(c);
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_graphic() && !separator(c)) {
        return Err(FfiError::invalid_input(format!(
            "invalid WebSocket subprotocol {name:?}: use a non-empty name of letters, digits \
             and !#$%&'*+-.^_`|~ only"
        )));
    }
    Ok(name.to_string())
}

/// New connection settings with the defaults (ack timeout 5 s, no subprotocols).
#[unsafe(no_mangle)]
pub extern "C" fn ipcez_connect_options_new() -> *mut ipcez_connect_options {
    call_or(std::ptr::null_mut(), || {
        into_handle::<ipcez_connect_options>(Mutex::new(ConnectOptions::default()))
    })
}

/// Sets how long a local send waits for the recipient's ack (0 is taken as 1 ms).
///
/// # Safety
/// `o` is NULL or live options.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_connect_options_set_ack_timeout_ms(
    o: *const ipcez_connect_options,
    ms: u32,
) {
    call_or((), || {
        if let Ok(o) = connect_ref(o) {
            lock(o).ack_timeout = Duration::from_millis(ms.max(1).into());
        }
    })
}

/// Adds a WebSocket subprotocol to offer (in order of preference).
///
/// # Safety
/// `o` is NULL or live options; `(name, name_len)` is valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_connect_options_add_subprotocol(
    o: *const ipcez_connect_options,
    name: *const u8,
    name_len: usize,
    out_err: *mut *mut ipcez_error,
) -> ipcez_result {
    call(out_err, || {
        let o = connect_ref(o)?;
        let name = subprotocol(unsafe { text(name, name_len, "subprotocol") }?)?;
        lock(o).subprotocols.push(name);
        Ok(ipcez_result::Ok)
    })
}

/// Frees connection settings. NULL is fine.
///
/// # Safety
/// `o` is NULL or options not yet freed, used by no other call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_connect_options_free(o: *mut ipcez_connect_options) {
    call_or((), || unsafe { free(o) })
}

/// Connects like `ipcez_connect`, with `options` (NULL: the defaults).
///
/// # Safety
/// `(endpoint, endpoint_len)` is valid; `options` is NULL or live; out-pointers are valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_connect_with(
    endpoint: *const u8,
    endpoint_len: usize,
    options: *const ipcez_connect_options,
    out_socket: *mut *mut ipcez_socket,
    out_err: *mut *mut ipcez_error,
) -> ipcez_result {
    call(out_err, || {
        let endpoint = unsafe { text(endpoint, endpoint_len, "endpoint") }?;
        let opts = match options.is_null() {
            true => ConnectOptions::default(),
            false => lock(connect_ref(options)?).clone(),
        };
        let socket = opts.connect_blocking(endpoint)?;
        unsafe { write_out(out_socket, new_socket(socket)) };
        Ok(ipcez_result::Ok)
    })
}

/// New listener settings with the defaults (mode 0600, ack timeout 5 s, max_connections
/// 1024 or fewer to fit under the process's descriptor limit, no extra origins, no
/// subprotocols, no TLS files).
#[unsafe(no_mangle)]
pub extern "C" fn ipcez_listen_options_new() -> *mut ipcez_listen_options {
    call_or(std::ptr::null_mut(), || {
        into_handle::<ipcez_listen_options>(Mutex::new(ListenOptions::default()))
    })
}

/// Sets the permission bits of a Unix socket file.
///
/// # Safety
/// `o` is NULL or live options.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_listen_options_set_mode(o: *const ipcez_listen_options, mode: u32) {
    call_or((), || {
        if let Ok(o) = listen_ref(o) {
            lock(o).mode = mode;
        }
    })
}

/// Sets the ack timeout of accepted connections (0 is taken as 1 ms).
///
/// # Safety
/// `o` is NULL or live options.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_listen_options_set_ack_timeout_ms(
    o: *const ipcez_listen_options,
    ms: u32,
) {
    call_or((), || {
        if let Ok(o) = listen_ref(o) {
            lock(o).connection.ack_timeout = Duration::from_millis(ms.max(1).into());
        }
    })
}

/// Sets the cap on open connections (accepted plus not yet accepted; at least 1).
///
/// # Safety
/// `o` is NULL or live options.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_listen_options_set_max_connections(
    o: *const ipcez_listen_options,
    max: usize,
) {
    call_or((), || {
        if let Ok(o) = listen_ref(o) {
            lock(o).max_connections = max.max(1);
        }
    })
}

/// Sets the PEM certificate chain and key files of a `wss://` listener (UTF-8 paths).
///
/// # Safety
/// `o` is NULL or live options; each `(ptr, len)` pair is valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_listen_options_set_tls(
    o: *const ipcez_listen_options,
    certfile: *const u8,
    certfile_len: usize,
    keyfile: *const u8,
    keyfile_len: usize,
    out_err: *mut *mut ipcez_error,
) -> ipcez_result {
    call(out_err, || {
        let o = listen_ref(o)?;
        let path = |p: &str| (!p.is_empty()).then(|| PathBuf::from(p));
        let cert = path(unsafe { text(certfile, certfile_len, "certfile") }?);
        let key = path(unsafe { text(keyfile, keyfile_len, "keyfile") }?);
        let mut o = lock(o);
        o.certfile = cert;
        o.keyfile = key;
        Ok(ipcez_result::Ok)
    })
}

/// Allows WebSocket requests from another `Origin` (e.g. `https://app.example.com`; `*`
/// allows any). Without any, only requests without `Origin` or from the listener's own
/// origin are accepted.
///
/// # Safety
/// `o` is NULL or live options; `(origin, origin_len)` is valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_listen_options_add_origin(
    o: *const ipcez_listen_options,
    origin: *const u8,
    origin_len: usize,
    out_err: *mut *mut ipcez_error,
) -> ipcez_result {
    call(out_err, || {
        let o = listen_ref(o)?;
        let origin = unsafe { text(origin, origin_len, "origin") }?.trim();
        let valid = origin == "*"
            || origin == "null"
            || origin
                .split_once("://")
                .is_some_and(|(scheme, host)| !scheme.is_empty() && !host.is_empty());
        if !valid {
            return Err(FfiError::invalid_input(format!(
                "invalid origin {origin:?}: expected scheme://host[:port] (as browsers send \
                 it, e.g. https://app.example.com), null, or * for any"
            )));
        }
        lock(o).origins.push(origin.to_string());
        Ok(ipcez_result::Ok)
    })
}

/// Adds a WebSocket subprotocol this listener speaks.
///
/// # Safety
/// `o` is NULL or live options; `(name, name_len)` is valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_listen_options_add_subprotocol(
    o: *const ipcez_listen_options,
    name: *const u8,
    name_len: usize,
    out_err: *mut *mut ipcez_error,
) -> ipcez_result {
    call(out_err, || {
        let o = listen_ref(o)?;
        let name = subprotocol(unsafe { text(name, name_len, "subprotocol") }?)?;
        lock(o).subprotocols.push(name);
        Ok(ipcez_result::Ok)
    })
}

/// Frees listener settings. NULL is fine.
///
/// # Safety
/// `o` is NULL or options not yet freed, used by no other call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_listen_options_free(o: *mut ipcez_listen_options) {
    call_or((), || unsafe { free(o) })
}

/// Listens like `ipcez_listen`, with `options` (NULL: the defaults).
///
/// # Safety
/// `(endpoint, endpoint_len)` is valid; `options` is NULL or live; out-pointers are valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_listen_with(
    endpoint: *const u8,
    endpoint_len: usize,
    options: *const ipcez_listen_options,
    out_listener: *mut *mut ipcez_listener,
    out_err: *mut *mut ipcez_error,
) -> ipcez_result {
    call(out_err, || {
        let endpoint = unsafe { text(endpoint, endpoint_len, "endpoint") }?;
        let opts = match options.is_null() {
            true => ListenOptions::default(),
            false => lock(listen_ref(options)?).clone(),
        };
        let listener = opts.listen_blocking(endpoint)?;
        let handle = into_handle::<ipcez_listener>(ProcessBound::new(listener));
        unsafe { write_out(out_listener, handle) };
        Ok(ipcez_result::Ok)
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
