//! `ipcez_message`: an owned byte buffer (a received message, or a string ipcez returns).

use crate::boundary::{Castable, borrow, call_or, into_handle, take, write_out};

/// An owned byte buffer: a received message, or a string ipcez returns.
#[allow(non_camel_case_types)]
pub struct ipcez_message {
    _private: [u8; 0],
}

impl Castable for ipcez_message {
    type Rust = Vec<u8>;
}

/// Hands `data` to the caller as a new message.
pub(crate) fn new_message(data: Vec<u8>) -> *mut ipcez_message {
    into_handle::<ipcez_message>(data)
}

/// Hands `data` to the caller as a new message in `*out_msg`, with the address and length
/// of its bytes in `*out_data` / `*out_len` (saving two calls per message).
///
/// # Safety
/// The out-pointers are NULL or valid for writes.
pub(crate) unsafe fn hand_over(
    data: Vec<u8>,
    out_msg: *mut *mut ipcez_message,
    out_data: *mut *const u8,
    out_len: *mut usize,
) {
    unsafe {
        write_out(out_data, data.as_ptr());
        write_out(out_len, data.len());
        write_out(out_msg, new_message(data));
    }
}

/// The message's bytes, valid until `ipcez_message_free`. NULL for a NULL message.
///
/// # Safety
/// `msg` is NULL or a live message.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_message_data(msg: *const ipcez_message) -> *const u8 {
    call_or(std::ptr::null(), || {
        unsafe { borrow(msg) }.map_or(std::ptr::null(), |m| m.as_ptr())
    })
}

/// The message's length in bytes (0 for NULL).
///
/// # Safety
/// `msg` is NULL or a live message.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_message_len(msg: *const ipcez_message) -> usize {
    call_or(0, || unsafe { borrow(msg) }.map_or(0, |m| m.len()))
}

/// Frees a message. NULL is fine; must not be called twice. (A large message's buffer is
/// kept for a later one to be received into.)
///
/// # Safety
/// `msg` is NULL or a message not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_message_free(msg: *mut ipcez_message) {
    call_or((), || {
        if let Some(data) = unsafe { take(msg) } {
            ipcez::reuse_buffer(data);
        }
    })
}
