//! Named auto-reset events (`Global\…`, falling back to `Local\…`), the Windows side of
//! the ack protocol.

use std::io;
use std::time::Duration;

use windows_sys::Win32::Foundation::{
    CloseHandle, ERROR_ACCESS_DENIED, GetLastError, HANDLE, WAIT_OBJECT_0, WAIT_TIMEOUT,
};
use windows_sys::Win32::System::Threading::{CreateEventW, SetEvent, WaitForSingleObject};

#[derive(Debug)]
pub(crate) struct NamedEvent {
    handle: HANDLE,
}

// SAFETY: event handles may be used from any thread.
unsafe impl Send for NamedEvent {}
// SAFETY: as above; SetEvent/WaitForSingleObject are thread-safe.
unsafe impl Sync for NamedEvent {}

fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

fn create(name: &str) -> HANDLE {
    let w = wide(name);
    // SAFETY: `w` is a NUL-terminated UTF-16 string; default security; auto-reset.
    unsafe { CreateEventW(std::ptr::null(), 0, 0, w.as_ptr()) }
}

impl NamedEvent {
    /// Opens or creates `name` (`Global\…`); where creating a global object is denied,
    /// uses the `Local\` namespace instead. `_mode` is a Unix notion and is ignored.
    pub(crate) fn open(name: &str, _mode: u32) -> io::Result<Self> {
        let mut handle = create(name);
        // SAFETY: GetLastError has no preconditions.
        if handle.is_null() && unsafe { GetLastError() } == ERROR_ACCESS_DENIED {
            if let Some(rest) = name.strip_prefix(r"Global\") {
                handle = create(&format!(r"Local\{rest}"));
            }
        }
        if handle.is_null() {
            return Err(io::Error::last_os_error());
        }
        Ok(NamedEvent { handle })
    }

    /// Events vanish with their last handle; nothing to remove.
    pub(crate) fn unlink(_name: &str) -> io::Result<()> {
        Ok(())
    }

    pub(crate) fn post(&self) -> io::Result<()> {
        // SAFETY: the handle is open while self lives.
        if unsafe { SetEvent(self.handle) } == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    pub(crate) fn try_wait(&self) -> io::Result<bool> {
        self.wait_timeout(Duration::ZERO)
    }

    pub(crate) fn wait_timeout(&self, timeout: Duration) -> io::Result<bool> {
        let ms = timeout.as_millis().min(u32::MAX as u128 - 1) as u32;
        // SAFETY: the handle is open while self lives.
        match unsafe { WaitForSingleObject(self.handle, ms) } {
            WAIT_OBJECT_0 => Ok(true),
            WAIT_TIMEOUT => Ok(false),
            _ => Err(io::Error::last_os_error()),
        }
    }
}

impl Drop for NamedEvent {
    fn drop(&mut self) {
        // SAFETY: the handle came from CreateEventW and is closed only here.
        unsafe { CloseHandle(self.handle) };
    }
}
