//! Named auto-reset events (`Global\…`, falling back to `Local\…`), the Windows side of
//! the ack protocol.

use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use windows_sys::Win32::Foundation::{
    CloseHandle, ERROR_ACCESS_DENIED, GetLastError, HANDLE, WAIT_OBJECT_0, WAIT_TIMEOUT,
};
use windows_sys::Win32::System::Threading::{
    CreateEventW, EVENT_MODIFY_STATE, OpenEventW, SYNCHRONIZATION_SYNCHRONIZE, SetEvent,
    WaitForSingleObject,
};

/// An open named event. Unlike a semaphore, an auto-reset event holds at most one signal:
/// a post made while the previous one is still untaken would be lost, and with it an ack
/// (several clients sending to one pipe at once do that). So posts the event cannot hold
/// yet are counted here and handed out, one at a time, as waiters take them.
#[derive(Debug)]
pub(crate) struct NamedEvent {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    handle: Handle,
    owed: Mutex<Owed>,
}

#[derive(Debug, Default)]
struct Owed {
    count: usize,
    /// A thread is handing out the owed posts.
    draining: bool,
}

/// How long owed posts are kept while nobody takes a signal: one still untaken after that
/// has no waiter left to wake (senders wait right after writing).
const KEEP_OWED: Duration = Duration::from_secs(1);
const RETRY: Duration = Duration::from_millis(1);

#[derive(Debug)]
pub(super) struct Handle(pub(super) HANDLE);

// SAFETY: event handles may be used from any thread; SetEvent/WaitForSingleObject are
// thread-safe.
unsafe impl Send for Handle {}
// SAFETY: as above.
unsafe impl Sync for Handle {}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: the handle came from CreateEventW/OpenEventW and is closed only here.
        unsafe { CloseHandle(self.0) };
    }
}

pub(super) fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

pub(super) fn create(name: &str) -> Result<HANDLE, u32> {
    let w = wide(name);
    // SAFETY: `w` is a NUL-terminated UTF-16 string; default security; auto-reset.
    let handle = unsafe { CreateEventW(std::ptr::null(), 0, 0, w.as_ptr()) };
    // SAFETY: GetLastError has no preconditions.
    if handle.is_null() {
        Err(unsafe { GetLastError() })
    } else {
        Ok(handle)
    }
}

pub(super) fn open_existing(name: &str) -> Result<HANDLE, u32> {
    let w = wide(name);
    // SAFETY: `w` is a NUL-terminated UTF-16 string. Only the rights the protocol uses:
    // an event another account created may grant no more than these.
    let handle = unsafe {
        OpenEventW(
            EVENT_MODIFY_STATE | SYNCHRONIZATION_SYNCHRONIZE,
            0,
            w.as_ptr(),
        )
    };
    // SAFETY: GetLastError has no preconditions.
    if handle.is_null() {
        Err(unsafe { GetLastError() })
    } else {
        Ok(handle)
    }
}

/// The two ways to get an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum How {
    /// CreateEventW: creates it, or opens it with full access when it exists.
    Create,
    /// OpenEventW with only the rights the ack protocol needs.
    Open,
}

/// The order in which a `Global\…` name is tried: create it; where that is denied (no
/// right to create global objects, or an existing event whose owner grants less than full
/// access), open the existing one with fewer rights; where that fails too, use the same
/// name in the session's `Local\` namespace. `call` does the Win32 call and returns the
/// handle or the Win32 error code.
pub(super) fn open_in_order<T>(
    name: &str,
    mut call: impl FnMut(How, &str) -> Result<T, u32>,
) -> Result<T, u32> {
    let denied = match call(How::Create, name) {
        Err(ERROR_ACCESS_DENIED) => ERROR_ACCESS_DENIED,
        other => return other,
    };
    let Some(rest) = name.strip_prefix(r"Global\") else {
        return Err(denied);
    };
    call(How::Open, name).or_else(|_| call(How::Create, &format!(r"Local\{rest}")))
}

impl NamedEvent {
    /// Opens or creates `name` (`Global\…`), falling back as [`open_in_order`] says.
    /// `_mode` is a Unix notion and is ignored.
    pub(crate) fn open(name: &str, _mode: u32) -> io::Result<Self> {
        let handle = open_in_order(name, |how, name| match how {
            How::Create => create(name),
            How::Open => open_existing(name),
        })
        .map_err(|code| {
            let e = io::Error::from_raw_os_error(code as i32);
            io::Error::new(e.kind(), format!("cannot open the named event {name}: {e}"))
        })?;
        Ok(NamedEvent {
            inner: Arc::new(Inner {
                handle: Handle(handle),
                owed: Mutex::new(Owed::default()),
            }),
        })
    }

    /// Signals once; see the type's documentation for posts the event cannot hold yet.
    pub(crate) fn post(&self) -> io::Result<()> {
        let mut owed = self.inner.lock();
        owed.count += 1;
        self.inner.drain(&mut owed)?;
        if owed.count > 0 && !owed.draining {
            owed.draining = true;
            let inner = self.inner.clone();
            let spawned = std::thread::Builder::new()
                .name("ipcez-event".into())
                .spawn(move || inner.keep_draining());
            if let Err(e) = spawned {
                owed.draining = false;
                return Err(e);
            }
        }
        Ok(())
    }

    pub(crate) fn try_wait(&self) -> io::Result<bool> {
        self.inner.wait_timeout(Duration::ZERO)
    }

    pub(crate) fn wait_timeout(&self, timeout: Duration) -> io::Result<bool> {
        self.inner.wait_timeout(timeout)
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Owed> {
        self.owed.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self) -> io::Result<()> {
        // SAFETY: the handle is open while self lives.
        if unsafe { SetEvent(self.handle.0) } == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn wait_timeout(&self, timeout: Duration) -> io::Result<bool> {
        let ms = timeout.as_millis().min(u32::MAX as u128 - 1) as u32;
        // SAFETY: the handle is open while self lives.
        match unsafe { WaitForSingleObject(self.handle.0, ms) } {
            WAIT_OBJECT_0 => Ok(true),
            WAIT_TIMEOUT => Ok(false),
            _ => Err(io::Error::last_os_error()),
        }
    }

    /// Hands out owed posts while the event is empty.
    fn drain(&self, owed: &mut Owed) -> io::Result<()> {
        while owed.count > 0 {
            // A signal still in the event would swallow ours: take it, then put one back.
            let full = self.wait_timeout(Duration::ZERO)?;
            self.set()?;
            if full {
                return Ok(());
            }
            owed.count -= 1;
        }
        Ok(())
    }

    /// The background half of `post`: retries until every owed post is out, or until
    /// nobody has taken a signal for `KEEP_OWED`.
    fn keep_draining(&self) {
        let mut progress = Instant::now();
        loop {
            std::thread::sleep(RETRY);
            let mut owed = self.lock();
            let before = owed.count;
            let failed = self.drain(&mut owed).is_err();
            if owed.count < before {
                progress = Instant::now();
            }
            if failed || owed.count == 0 || progress.elapsed() >= KEEP_OWED {
                owed.count = 0;
                owed.draining = false;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the fallback against scripted results; returns the outcome and the calls made.
    fn scripted(name: &str, results: &[Result<u8, u32>]) -> (Result<u8, u32>, Vec<(How, String)>) {
        let mut calls = Vec::new();
        let mut next = results.iter();
        let out = open_in_order(name, |how, n| {
            calls.push((how, n.to_string()));
            *next.next().expect("more calls than scripted")
        });
        (out, calls)
    }

    #[test]
    fn a_global_event_that_can_be_created_is_used() {
        let (out, calls) = scripted(r"Global\p.data_ready", &[Ok(1)]);
        assert_eq!(out, Ok(1));
        assert_eq!(calls, [(How::Create, r"Global\p.data_ready".to_string())]);
    }

    #[test]
    fn denied_global_opens_the_existing_event_with_fewer_rights() {
        let (out, calls) = scripted(r"Global\p.data_ready", &[Err(ERROR_ACCESS_DENIED), Ok(2)]);
        assert_eq!(out, Ok(2));
        assert_eq!(calls[1], (How::Open, r"Global\p.data_ready".to_string()));
    }

    #[test]
    fn denied_global_with_no_existing_event_falls_back_to_local() {
        const ERROR_FILE_NOT_FOUND: u32 = 2;
        let (out, calls) = scripted(
            r"Global\p.data_acked",
            &[Err(ERROR_ACCESS_DENIED), Err(ERROR_FILE_NOT_FOUND), Ok(3)],
        );
        assert_eq!(out, Ok(3));
        assert_eq!(calls[2], (How::Create, r"Local\p.data_acked".to_string()));
    }

    #[test]
    fn other_errors_and_other_namespaces_do_not_fall_back() {
        const ERROR_PATH_NOT_FOUND: u32 = 3;
        let (out, calls) = scripted(r"Global\a\b.data_ready", &[Err(ERROR_PATH_NOT_FOUND)]);
        assert_eq!((out, calls.len()), (Err(ERROR_PATH_NOT_FOUND), 1));
        let (out, calls) = scripted(r"Local\p.data_ready", &[Err(ERROR_ACCESS_DENIED)]);
        assert_eq!((out, calls.len()), (Err(ERROR_ACCESS_DENIED), 1));
    }

    /// Posts made while nobody waits are not merged: each is one signal, handed out as
    /// the earlier ones are taken.
    #[test]
    fn posts_made_while_nobody_waits_are_all_handed_out() {
        let name = format!(r"Global\ipcez-unit-{}.data_acked", std::process::id());
        let (a, b) = (
            NamedEvent::open(&name, 0).unwrap(),
            NamedEvent::open(&name, 0).unwrap(),
        );
        for _ in 0..3 {
            a.post().unwrap();
        }
        for i in 0..3 {
            assert!(
                b.wait_timeout(Duration::from_secs(2)).unwrap(),
                "signal {i}"
            );
        }
        assert!(
            !b.wait_timeout(Duration::from_millis(100)).unwrap(),
            "no more than were posted"
        );
    }

    /// Under Wine and on Windows alike: two opens of one name are one event.
    #[test]
    fn two_opens_of_a_name_share_the_event() {
        let name = format!(r"Global\ipcez-unit-{}.data_ready", std::process::id());
        let (a, b) = (
            NamedEvent::open(&name, 0).unwrap(),
            NamedEvent::open(&name, 0).unwrap(),
        );
        assert!(!b.try_wait().unwrap());
        a.post().unwrap();
        assert!(b.try_wait().unwrap());
        assert!(!a.try_wait().unwrap(), "auto-reset: one post is one token");
    }
}
