//! A hand-written Windows peer: a named-pipe client and named events through the raw
//! Win32 API (windows-sys), deliberately sharing no code with ipcez. Blocking calls; use
//! them from a plain thread or `spawn_blocking`.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use windows_sys::Win32::Foundation::{
    CloseHandle, ERROR_PIPE_BUSY, GENERIC_READ, GENERIC_WRITE, GetLastError, HANDLE,
    INVALID_HANDLE_VALUE, WAIT_OBJECT_0,
};
use windows_sys::Win32::Storage::FileSystem::PIPE_ACCESS_DUPLEX;
use windows_sys::Win32::Storage::FileSystem::{CreateFileW, OPEN_EXISTING, ReadFile, WriteFile};
use windows_sys::Win32::System::LibraryLoader::{GetModuleHandleA, GetProcAddress};
use windows_sys::Win32::System::Pipes::{
    ConnectNamedPipe, CreateNamedPipeW, PIPE_READMODE_BYTE, PIPE_TYPE_BYTE,
    PIPE_UNLIMITED_INSTANCES, PIPE_WAIT, PeekNamedPipe,
};
use windows_sys::Win32::System::Threading::{
    CreateEventW, EVENT_MODIFY_STATE, OpenEventW, SYNCHRONIZATION_SYNCHRONIZE, SetEvent,
    WaitForSingleObject,
};

fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

/// True under Wine (its ntdll exports `wine_get_version`), for the few places where Wine
/// is known to differ from Windows.
pub fn is_wine() -> bool {
    // SAFETY: NUL-terminated names; ntdll is loaded in every process.
    unsafe {
        let ntdll = GetModuleHandleA(c"ntdll.dll".as_ptr().cast());
        !ntdll.is_null() && GetProcAddress(ntdll, c"wine_get_version".as_ptr().cast()).is_some()
    }
}

/// Waits, off the runtime's threads, for a raw peer's thread and returns what it returned.
pub async fn join<T: Send + 'static>(peer: std::thread::JoinHandle<T>) -> T {
    tokio::task::spawn_blocking(move || peer.join().unwrap())
        .await
        .unwrap()
}

/// A synchronous (not overlapped) client handle to a named pipe.
pub struct RawPipe(HANDLE);

// SAFETY: a pipe handle may be used from any thread.
unsafe impl Send for RawPipe {}

impl RawPipe {
    /// `CreateFileW` on `\\.\pipe\…`, retrying while every server instance is busy.
    pub fn connect(path: &str) -> Self {
        let w = wide(path);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // SAFETY: NUL-terminated name, no security attributes, no template.
            let h = unsafe {
                CreateFileW(
                    w.as_ptr(),
                    GENERIC_READ | GENERIC_WRITE,
                    0,
                    std::ptr::null(),
                    OPEN_EXISTING,
                    0,
                    std::ptr::null_mut(),
                )
            };
            if h != INVALID_HANDLE_VALUE {
                return RawPipe(h);
            }
            // SAFETY: no preconditions.
            let err = unsafe { GetLastError() };
            assert!(
                err == ERROR_PIPE_BUSY && Instant::now() < deadline,
                "CreateFileW({path}) failed with error {err}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn read_exact(&self, buf: &mut [u8]) {
        let mut done = 0;
        while done < buf.len() {
            let mut n = 0u32;
            let want = (buf.len() - done).min(u32::MAX as usize) as u32;
            // SAFETY: the buffer is valid for `want` bytes; synchronous handle, no OVERLAPPED.
            let ok = unsafe {
                ReadFile(
                    self.0,
                    buf[done..].as_mut_ptr(),
                    want,
                    &mut n,
                    std::ptr::null_mut(),
                )
            };
            // SAFETY: no preconditions.
            assert!(ok != 0, "ReadFile failed with error {}", unsafe {
                GetLastError()
            });
            done += n as usize;
        }
    }

    /// One frame: a 4-byte big-endian length, then the payload.
    pub fn read_frame(&self) -> Vec<u8> {
        let mut len = [0u8; 4];
        self.read_exact(&mut len);
        let mut body = vec![0; u32::from_be_bytes(len) as usize];
        self.read_exact(&mut body);
        body
    }

    pub fn write_all(&self, mut data: &[u8]) {
        while !data.is_empty() {
            let mut n = 0u32;
            let len = data.len().min(u32::MAX as usize) as u32;
            // SAFETY: `data` is valid for `len` bytes; synchronous handle.
            let ok = unsafe { WriteFile(self.0, data.as_ptr(), len, &mut n, std::ptr::null_mut()) };
            // SAFETY: no preconditions.
            assert!(ok != 0, "WriteFile failed with error {}", unsafe {
                GetLastError()
            });
            data = &data[n as usize..];
        }
    }

    /// Bytes waiting to be read (`PeekNamedPipe`).
    pub fn available(&self) -> u32 {
        let mut n = 0u32;
        // SAFETY: no buffer is read; only the count is written.
        let ok = unsafe {
            PeekNamedPipe(
                self.0,
                std::ptr::null_mut(),
                0,
                std::ptr::null_mut(),
                &mut n,
                std::ptr::null_mut(),
            )
        };
        assert!(ok != 0, "PeekNamedPipe failed");
        n
    }

    pub fn write_frame(&self, payload: &[u8]) {
        let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(payload);
        self.write_all(&frame);
    }
}

impl Drop for RawPipe {
    fn drop(&mut self) {
        // SAFETY: the handle came from CreateFileW and is closed only here.
        unsafe { CloseHandle(self.0) };
    }
}

/// A custom pipe server: one synchronous instance of `CreateNamedPipeW`.
pub struct RawServer(HANDLE);

// SAFETY: a pipe handle may be used from any thread.
unsafe impl Send for RawServer {}

impl RawServer {
    pub fn create(path: &str) -> Self {
        let w = wide(path);
        // SAFETY: NUL-terminated name, default security; a blocking byte pipe.
        let h = unsafe {
            CreateNamedPipeW(
                w.as_ptr(),
                PIPE_ACCESS_DUPLEX,
                PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT,
                PIPE_UNLIMITED_INSTANCES,
                65536,
                65536,
                0,
                std::ptr::null(),
            )
        };
        assert!(h != INVALID_HANDLE_VALUE, "CreateNamedPipeW({path}) failed");
        RawServer(h)
    }

    /// Waits for a client (`ConnectNamedPipe`); the instance becomes the connection.
    pub fn accept(self) -> RawPipe {
        // SAFETY: a pipe instance handle; synchronous, no OVERLAPPED.
        let ok = unsafe { ConnectNamedPipe(self.0, std::ptr::null_mut()) };
        // SAFETY: no preconditions. ERROR_PIPE_CONNECTED (535): the client came first.
        assert!(
            ok != 0 || unsafe { GetLastError() } == 535,
            "ConnectNamedPipe failed"
        );
        let pipe = RawPipe(self.0);
        std::mem::forget(self);
        pipe
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        // SAFETY: the handle came from CreateNamedPipeW and is closed only here.
        unsafe { CloseHandle(self.0) };
    }
}

/// An existing named event, opened with just the rights the ack protocol needs.
pub struct Event(HANDLE);

// SAFETY: event handles may be used from any thread.
unsafe impl Send for Event {}

impl Event {
    /// `OpenEventW`; panics when the event does not exist.
    pub fn open(name: &str) -> Self {
        let w = wide(name);
        // SAFETY: NUL-terminated name.
        let h = unsafe {
            OpenEventW(
                EVENT_MODIFY_STATE | SYNCHRONIZATION_SYNCHRONIZE,
                0,
                w.as_ptr(),
            )
        };
        // SAFETY: no preconditions.
        assert!(
            !h.is_null(),
            "OpenEventW({name}) failed with error {}",
            unsafe { GetLastError() }
        );
        Event(h)
    }

    /// `CreateEventW` (auto-reset), as a custom listener makes the pipe's events.
    pub fn create(name: &str) -> Self {
        let w = wide(name);
        // SAFETY: NUL-terminated name, default security.
        let h = unsafe { CreateEventW(std::ptr::null(), 0, 0, w.as_ptr()) };
        assert!(!h.is_null(), "CreateEventW({name}) failed");
        Event(h)
    }

    pub fn set(&self) {
        // SAFETY: open handle with EVENT_MODIFY_STATE.
        assert!(unsafe { SetEvent(self.0) } != 0, "SetEvent failed");
    }

    /// Waits up to `timeout` for the event (auto-reset: taking it resets it).
    pub fn wait(&self, timeout: Duration) -> bool {
        // SAFETY: open handle with SYNCHRONIZE.
        unsafe { WaitForSingleObject(self.0, timeout.as_millis() as u32) == WAIT_OBJECT_0 }
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        // SAFETY: the handle came from OpenEventW and is closed only here.
        unsafe { CloseHandle(self.0) };
    }
}
