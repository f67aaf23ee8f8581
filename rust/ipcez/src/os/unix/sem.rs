//! POSIX named semaphores (`sem_open`), the Linux side of the ack protocol.
//!
//! Hand-written over `libc` because no maintained crate exposes named semaphores with
//! timed waits; the surface is five calls.

use std::ffi::CString;
use std::io;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// An open named semaphore. Closed on drop; never unlinked by drop.
#[derive(Debug)]
pub(crate) struct NamedSemaphore {
    sem: *mut libc::sem_t,
}

// SAFETY: POSIX semaphore operations are thread-safe; the pointer is owned by this value
// and closed exactly once, in drop.
unsafe impl Send for NamedSemaphore {}
// SAFETY: as above; every method takes `&self` and calls thread-safe sem_* functions.
unsafe impl Sync for NamedSemaphore {}

fn c_name(name: &str) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in name"))
}

impl NamedSemaphore {
    /// Opens `name`, creating it with value 0 and `mode` when it does not exist.
    pub(crate) fn open(name: &str, mode: u32) -> io::Result<Self> {
        let c = c_name(name)?;
        // SAFETY: `c` is a valid NUL-terminated string; the variadic mode/value arguments
        // are passed with the C types sem_open reads (mode_t promoted to unsigned int).
        let sem = unsafe {
            libc::sem_open(
                c.as_ptr(),
                libc::O_CREAT,
                mode as libc::c_uint,
                0 as libc::c_uint,
            )
        };
        if sem == libc::SEM_FAILED {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!("cannot open the ack semaphore {name}: {e}"),
            ));
        }
        Ok(NamedSemaphore { sem })
    }

    /// Removes `name` from the system (open handles stay usable). Missing is fine.
    pub(crate) fn unlink(name: &str) -> io::Result<()> {
        let c = c_name(name)?;
        // SAFETY: `c` is a valid NUL-terminated string.
        if unsafe { libc::sem_unlink(c.as_ptr()) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::NotFound {
            Ok(())
        } else {
            Err(e)
        }
    }

    /// Gives `name` the permission bits `mode` (read/write bits only), where the system
    /// shows named semaphores as files (Linux: `/dev/shm/sem.<name>`); sem_open's own mode
    /// is cut by the umask, so widening needs this. Elsewhere it does nothing.
    pub(crate) fn set_mode(name: &str, mode: u32) -> io::Result<()> {
        if cfg!(target_os = "linux") {
            use std::os::unix::fs::PermissionsExt;
            let file = format!("/dev/shm/sem.{}", name.trim_start_matches('/'));
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(mode & 0o666))?;
        }
        Ok(())
    }

    /// Adds one token.
    pub(crate) fn post(&self) -> io::Result<()> {
        // SAFETY: `self.sem` came from a successful sem_open and is not closed yet.
        if unsafe { libc::sem_post(self.sem) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Takes one token if there is one, without waiting.
    pub(crate) fn try_wait(&self) -> io::Result<bool> {
        loop {
            // SAFETY: as in `post`.
            if unsafe { libc::sem_trywait(self.sem) } == 0 {
                return Ok(true);
            }
            match io::Error::last_os_error() {
                e if e.raw_os_error() == Some(libc::EAGAIN) => return Ok(false),
                e if e.kind() == io::ErrorKind::Interrupted => continue,
                e => return Err(e),
            }
        }
    }

    /// Takes one token, waiting up to `timeout`; false when none came.
    pub(crate) fn wait_timeout(&self, timeout: Duration) -> io::Result<bool> {
        if self.try_wait()? {
            return Ok(true);
        }
        if timeout.is_zero() {
            return Ok(false);
        }
        // sem_timedwait takes an absolute CLOCK_REALTIME deadline (sem_clockwait would take
        // a monotonic one but needs glibc 2.30, newer than the wheel's baseline).
        let deadline = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            + timeout;
        let ts = libc::timespec {
            tv_sec: deadline.as_secs() as libc::time_t,
            tv_nsec: deadline.subsec_nanos() as libc::c_long,
        };
        loop {
            // SAFETY: as in `post`; `ts` is a valid timespec.
            if unsafe { libc::sem_timedwait(self.sem, &ts) } == 0 {
                return Ok(true);
            }
            match io::Error::last_os_error() {
                e if e.raw_os_error() == Some(libc::ETIMEDOUT) => return Ok(false),
                e if e.kind() == io::ErrorKind::Interrupted => continue,
                e => return Err(e),
            }
        }
    }
}

impl Drop for NamedSemaphore {
    fn drop(&mut self) {
        // SAFETY: the pointer came from sem_open and is closed only here.
        unsafe { libc::sem_close(self.sem) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn post_wait_timeout_and_unlink() {
        let name = format!("/ipcez.semtest.{}", std::process::id());
        let a = NamedSemaphore::open(&name, 0o600).unwrap();
        let b = NamedSemaphore::open(&name, 0o600).unwrap();
        assert!(!a.try_wait().unwrap());
        b.post().unwrap();
        assert!(a.wait_timeout(Duration::from_millis(10)).unwrap());
        let t = std::time::Instant::now();
        assert!(!a.wait_timeout(Duration::from_millis(30)).unwrap());
        assert!(t.elapsed() >= Duration::from_millis(25));
        let shm = format!("/dev/shm/sem.{}", &name[1..]);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&shm).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        NamedSemaphore::unlink(&name).unwrap();
        assert!(!std::path::Path::new(&shm).exists());
        NamedSemaphore::unlink(&name).unwrap();
    }
}
