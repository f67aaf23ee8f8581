//! The one audited place where handles cross the boundary: pointer casts, NULL checks and
//! the panic boundary every export runs in.
//!
//! Each opaque handle type names the Rust type behind it through [`Castable`], and every
//! cast goes through that pairing: a `*const ipcez_listener` can only ever be borrowed as
//! the listener it is, never as a socket (the compiler refuses the mix-up).

use std::mem::ManuallyDrop;
use std::panic::{AssertUnwindSafe, catch_unwind};

use ipcez::ProcessEpoch;

use crate::error::{FfiError, ipcez_error, ipcez_result};

/// Ties an opaque C handle type to the Rust value it stands for. Every handle is a
/// `Box<Self::Rust>` handed out by [`into_handle`] and taken back once by [`free`].
pub(crate) trait Castable {
    /// The Rust value behind a pointer to this handle type.
    type Rust;
}

// The error handle's pairing lives here because errors sit below this file; every other
// handle type declares its own beside its definition.
impl Castable for ipcez_error {
    type Rust = FfiError;
}

/// The value of a handle that owns process-wide state (a connection, a listener), tied to
/// the process that made it.
///
/// A `fork()` copies the handle into the child, but the connection, runtime and semaphores
/// behind it stay the parent's. In the child the value is never used (borrowing it is a
/// "created before fork" error) and never dropped, not even by `_free`: dropping would
/// shut down the parent's sockets and deregister them from the epoll instance both
/// processes share. It is leaked instead.
pub(crate) struct ProcessBound<T> {
    epoch: ProcessEpoch,
    value: ManuallyDrop<T>,
}

impl<T> ProcessBound<T> {
    pub(crate) fn new(value: T) -> Self {
        ProcessBound {
            epoch: ProcessEpoch::current(),
            value: ManuallyDrop::new(value),
        }
    }

    /// The value, or the "created before fork" error (naming `what`) in a forked child.
    pub(crate) fn get(&self, what: &str) -> Result<&T, FfiError> {
        if self.epoch.is_current() {
            Ok(&self.value)
        } else {
            Err(FfiError::forked(what))
        }
    }
}

impl<T> Drop for ProcessBound<T> {
    fn drop(&mut self) {
        if self.epoch.is_current() {
            // SAFETY: dropped once, here; the value is never touched again.
            unsafe { ManuallyDrop::drop(&mut self.value) };
        }
    }
}

/// Moves `value` to the heap and hands its ownership to the caller as `*mut H`.
pub(crate) fn into_handle<H: Castable>(value: H::Rust) -> *mut H {
    Box::into_raw(Box::new(value)).cast()
}

/// Borrows the value behind a handle made by [`into_handle`]; `None` for NULL.
///
/// # Safety
/// `ptr` is NULL or came from `into_handle::<H>` and has not been freed.
pub(crate) unsafe fn borrow<'a, H: Castable>(ptr: *const H) -> Option<&'a H::Rust> {
    // SAFETY: per the `# Safety` section, a non-NULL `ptr` points at a live `H::Rust`.
    unsafe { ptr.cast::<H::Rust>().as_ref() }
}

/// Like [`borrow`], with a NULL-parameter error naming `what` for NULL.
///
/// # Safety
/// As for [`borrow`].
pub(crate) unsafe fn try_borrow<'a, H: Castable>(
    ptr: *const H,
    what: &str,
) -> Result<&'a H::Rust, FfiError> {
    // SAFETY: per the `# Safety` section.
    unsafe { borrow(ptr) }.ok_or_else(|| FfiError::null_parameter(what))
}

/// Takes back the value behind a handle; `None` for NULL.
///
/// # Safety
/// As for [`free`].
pub(crate) unsafe fn take<H: Castable>(ptr: *mut H) -> Option<H::Rust> {
    // SAFETY: per the `# Safety` section, a non-NULL `ptr` is the unique owner of a
    // `Box<H::Rust>`.
    (!ptr.is_null()).then(|| *unsafe { Box::from_raw(ptr.cast::<H::Rust>()) })
}

/// Takes back and drops the value behind a handle; NULL is a no-op.
///
/// # Safety
/// `ptr` is NULL or came from `into_handle::<H>`, is not freed twice, and no other call
/// uses it concurrently or afterwards.
pub(crate) unsafe fn free<H: Castable>(ptr: *mut H) {
    // SAFETY: per the `# Safety` section.
    drop(unsafe { take(ptr) });
}

/// Writes `value` through an out-pointer when it is not NULL.
///
/// # Safety
/// `out` is NULL or valid for a write of `T`.
pub(crate) unsafe fn write_out<T>(out: *mut T, value: T) {
    if let Some(slot) = unsafe { out.as_mut() } {
        *slot = value;
    }
}

/// Borrows `len` bytes at `ptr` (NULL is fine when `len` is 0).
///
/// # Safety
/// When `len > 0`, `ptr` is valid for reads of `len` bytes for the returned lifetime.
pub(crate) unsafe fn bytes<'a>(ptr: *const u8, len: usize) -> Result<&'a [u8], FfiError> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(FfiError::null_parameter("data"));
    }
    // SAFETY: per the `# Safety` section.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// Borrows `len` elements at `ptr` for writing (NULL is fine when `len` is 0); `what`
/// names the parameter in the error.
///
/// # Safety
/// When `len > 0`, `ptr` is valid for writes of `len` elements for the returned lifetime.
pub(crate) unsafe fn slice_mut<'a, T>(
    ptr: *mut T,
    len: usize,
    what: &str,
) -> Result<&'a mut [T], FfiError> {
    match (ptr.is_null(), len) {
        (_, 0) => Ok(&mut []),
        (true, _) => Err(FfiError::null_parameter(what)),
        // SAFETY: per the `# Safety` section.
        (false, _) => Ok(unsafe { std::slice::from_raw_parts_mut(ptr, len) }),
    }
}

/// Borrows a UTF-8 string given as `(ptr, len)`.
///
/// # Safety
/// As for [`bytes`].
pub(crate) unsafe fn text<'a>(ptr: *const u8, len: usize, what: &str) -> Result<&'a str, FfiError> {
    let b = unsafe { bytes(ptr, len) }?;
    std::str::from_utf8(b)
        .map_err(|_| FfiError::invalid_input(format!("the {what} is not valid UTF-8")))
}

/// Runs a fallible export body: `Ok` → its result code; `Err` or a panic → an
/// [`ipcez_error`] written to `out_err` and `IPCEZ_RESULT_ERROR`.
pub(crate) fn call(
    out_err: *mut *mut ipcez_error,
    body: impl FnOnce() -> Result<ipcez_result, FfiError>,
) -> ipcez_result {
    let outcome =
        catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|panic| Err(FfiError::panic(&panic)));
    match outcome {
        Ok(code) => code,
        Err(e) => {
            // SAFETY: out_err is NULL or a valid out-pointer, per every export's `# Safety` section.
            unsafe { write_out(out_err, into_handle::<ipcez_error>(e)) };
            ipcez_result::Error
        }
    }
}

/// Runs an infallible export body; a panic gives `fallback`.
pub(crate) fn call_or<R>(fallback: R, body: impl FnOnce() -> R) -> R {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(fallback)
}
