//! Reading and freeing an `ipcez_error`: its kind, errno, message and detail fields.

use crate::boundary::{borrow, call_or, free, write_out};
use crate::error::{ipcez_error, ipcez_error_kind};

/// The error's kind (an `ipcez_error_kind`); `IPCEZ_ERROR_KIND_NULL_PARAMETER` for NULL.
///
/// # Safety
/// `err` is NULL or a live error.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_error_code(err: *const ipcez_error) -> u32 {
    call_or(ipcez_error_kind::Panic as u32, || {
        // SAFETY: per the function's `# Safety` section.
        unsafe { borrow(err) }.map_or(ipcez_error_kind::NullParameter, |e| e.code) as u32
    })
}

/// The POSIX errno of the error where one applies (`ENOENT`, `ECONNREFUSED`,
/// `EADDRINUSE`, `EINVAL`, `ECONNRESET`, `ETIMEDOUT`, …), else 0.
///
/// # Safety
/// `err` is NULL or a live error.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_error_errno(err: *const ipcez_error) -> i32 {
    call_or(0, || unsafe { borrow(err) }.map_or(0, |e| e.errno))
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
        let Some(e) = (unsafe { borrow(err) }) else {
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
        let Some(e) = (unsafe { borrow(err) }) else {
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
    call_or((), || unsafe { free(err) })
}
