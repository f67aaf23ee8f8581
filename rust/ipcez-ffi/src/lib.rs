//! # ipcez-ffi: the C ABI of ipcez
//!
//! Conventions (`docs/c-abi-and-rust.md` says the same):
//! * Every export starts with `ipcez_`; handles are opaque, made by one call and freed by
//!   its `_free`, which accepts NULL.
//! * Bytes and strings go in as `(const uint8_t *ptr, size_t len)`; strings are UTF-8, not
//!   NUL-terminated. Borrowed inputs are not kept after the call returns.
//! * Fallible calls return an `ipcez_result` and, on `IPCEZ_RESULT_ERROR`, store a new
//!   `ipcez_error` in `*out_err` for the caller to free. Out-parameters are written only on
//!   success.
//! * Blocking calls take a `timeout_ms` (`UINT32_MAX` waits without limit) and return
//!   `IPCEZ_RESULT_TIMEOUT` when it runs out with nothing done, so a caller can wait in
//!   short slices and stay interruptible. A send's ack deadline is kept here, not by the
//!   caller: slices only bound each wait.
//! * No panic unwinds out: a panic becomes an `IPCEZ_ERROR_KIND_PANIC` error.
//! * Handles may be used from several threads at once, except that `_free` must not race
//!   any other call on the same handle.
//!
//! One file per handle type (`socket`, `listener`, `message`, `poller`, `error` with
//! `error_access`, `options` for connect and listen settings), plus `socket_io`
//! (readiness, receiving into caller memory, sends that never wait, batches), `ack_waiter`
//! (acks awaited for event loops), `resolve` (endpoint questions and the detection
//! guidance), `log` (Rust's log records to a callback), `handler` (handler threads),
//! `per_process` (what a `fork()` child makes anew) and `boundary`, the one audited file
//! of pointer casts, NULL checks and the panic boundary.

mod ack_waiter;
mod boundary;
mod error;
mod error_access;
mod handler;
mod listener;
mod log;
mod message;
mod options;
mod per_process;
mod poller;
mod recv_batch;
mod resolve;
mod socket;
mod socket_io;

use std::ffi::c_char;

pub use error::{ipcez_error, ipcez_error_field, ipcez_error_kind, ipcez_result};
pub use error_access::*;
pub use handler::ipcez_handler_fn;
pub use listener::*;
pub use log::*;
pub use message::*;
pub use options::*;
pub use poller::*;
pub use recv_batch::*;
pub use resolve::*;
pub use socket::*;
pub use socket_io::*;

/// The library version, e.g. `"0.1.0"`: a static NUL-terminated string.
#[unsafe(no_mangle)]
pub extern "C" fn ipcez_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}
