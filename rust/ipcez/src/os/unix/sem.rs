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

/// Where Linux keeps a named semaphore: the file `/dev/shm/sem.<name without the slash>`
/// (`None` on systems that do not show named semaphores as files).
fn shm_file(name: &str) -> Option<String> {
    cfg!(target_os = "linux").then(|| format!("/dev/shm/sem.{}", name.trim_start_matches('/')))
}

/// The identity of the file behind a semaphore name: which one this listener created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// The user name of `uid` ("uid N" alone when it has none).
pub(crate) fn user_name(uid: u32) -> String {
    let mut pw: libc::passwd = unsafe_zeroed_passwd();
    let mut buf = vec![0 as libc::c_char; 4096];
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; getpwuid_r writes strings into `buf`.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut out) };
    if rc != 0 || out.is_null() || pw.pw_name.is_null() {
        return format!("uid {uid}");
    }
    // SAFETY: on success pw_name points to a NUL-terminated string inside `buf`.
    let name = unsafe { std::ffi::CStr::from_ptr(pw.pw_name) };
    format!("{} (uid {uid})", name.to_string_lossy())
}

fn unsafe_zeroed_passwd() -> libc::passwd {
    // SAFETY: passwd is plain data (integers and pointers); all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

fn euid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

/// The error for a name that another user holds: who, and how to get rid of it.
fn held_by_other(name: &str, file: &str, owner: u32) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!(
            "the ack semaphore {name} ({file}) belongs to user {}, not to this process ({}); \
             a listener cannot trust acks another user can forge. If no listener of that user \
             serves this path, remove it with `sudo rm {file}` and listen again",
            user_name(owner),
            user_name(euid()),
        ),
    )
}

impl NamedSemaphore {
    fn sem_open(name: &str, flags: libc::c_int, mode: u32) -> io::Result<Self> {
        let c = c_name(name)?;
        // SAFETY: `c` is a valid NUL-terminated string; the variadic mode/value arguments
        // are passed with the C types sem_open reads (mode_t promoted to unsigned int).
        let sem =
            unsafe { libc::sem_open(c.as_ptr(), flags, mode as libc::c_uint, 0 as libc::c_uint) };
        if sem == libc::SEM_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(NamedSemaphore { sem })
    }

    /// Opens `name`, creating it with value 0 and `mode` when it does not exist (an
    /// existing one keeps its mode). For clients of a listener that may not have created
    /// the names (a custom peer), and for the Windows-shaped generic interface.
    pub(crate) fn open(name: &str, mode: u32) -> io::Result<Self> {
        Self::sem_open(name, libc::O_CREAT, mode).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot open the ack semaphore {name}: {e}"),
            )
        })
    }

    /// The listener's creation: a new semaphore with value 0 that nobody else can have
    /// opened before, with the read/write bits of `mode`. A leftover of this user (a
    /// crashed run) is removed first; one of another user is an error that names it.
    /// Returns the identity of the file, for [`unlink_if_same`](Self::unlink_if_same).
    pub(crate) fn create_fresh(name: &str, mode: u32) -> io::Result<(Self, Option<FileId>)> {
        let file = shm_file(name);
        // Another process of ours may recreate it between removal and creation; try again.
        for _ in 0..3 {
            match file.as_deref().map(std::fs::symlink_metadata) {
                Some(Ok(meta)) => {
                    use std::os::unix::fs::MetadataExt;
                    if meta.uid() != euid() {
                        return Err(held_by_other(
                            name,
                            file.as_deref().unwrap_or(name),
                            meta.uid(),
                        ));
                    }
                    Self::unlink(name)?;
                }
                Some(Err(e)) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("cannot inspect {name}: {e}"),
                    ));
                }
                None => Self::unlink(name)?,
                _ => {}
            }
            // Owner-only at birth: the mode is widened below, on the open file.
            match Self::sem_open(name, libc::O_CREAT | libc::O_EXCL, 0o600) {
                Ok(sem) => {
                    let id = match &file {
                        Some(f) => Some(set_mode_on_own_file(name, f, mode)?),
                        None => None,
                    };
                    return Ok((sem, id));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("cannot create the ack semaphore {name}: {e}"),
                    ));
                }
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "cannot create the ack semaphore {name}: something recreates it each time it \
                 is removed; is another listener starting on the same path?"
            ),
        ))
    }

    /// Removes `name` when it is still the file `id` this listener created (a newer
    /// listener's semaphore is left alone). Without an identity it removes the name.
    pub(crate) fn unlink_if_same(name: &str, id: Option<FileId>) -> io::Result<()> {
        if let (Some(file), Some(id)) = (shm_file(name), id) {
            match std::fs::symlink_metadata(&file) {
                Ok(meta) if FileId::of(&meta) == id => {}
                _ => return Ok(()),
            }
        }
        Self::unlink(name)
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

/// Sets the read/write bits of `mode` on the semaphore file this process just created,
/// through a descriptor opened without following symlinks, after checking that it is ours.
fn set_mode_on_own_file(name: &str, file: &str, mode: u32) -> io::Result<FileId> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(file)
        .map_err(|e| {
            io::Error::new(e.kind(), format!("cannot open {file} to set its mode: {e}"))
        })?;
    let meta = f.metadata()?;
    if meta.uid() != euid() {
        return Err(held_by_other(name, file, meta.uid()));
    }
    use std::os::unix::fs::PermissionsExt;
    f.set_permissions(std::fs::Permissions::from_mode(mode & 0o666))?;
    Ok(FileId::of(&meta))
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
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn test_name(what: &str) -> String {
        format!("/ipcez.semtest-{what}.{}", std::process::id())
    }

    fn mode_of(file: &str) -> u32 {
        std::fs::symlink_metadata(file)
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    }

    #[test]
    fn post_wait_timeout_and_unlink() {
        let name = test_name("basic");
        let a = NamedSemaphore::open(&name, 0o600).unwrap();
        let b = NamedSemaphore::open(&name, 0o600).unwrap();
        assert!(!a.try_wait().unwrap());
        b.post().unwrap();
        assert!(a.wait_timeout(Duration::from_millis(10)).unwrap());
        let t = std::time::Instant::now();
        assert!(!a.wait_timeout(Duration::from_millis(30)).unwrap());
        assert!(t.elapsed() >= Duration::from_millis(25));
        let shm = shm_file(&name).unwrap();
        assert_eq!(mode_of(&shm), 0o600);
        NamedSemaphore::unlink(&name).unwrap();
        assert!(!std::path::Path::new(&shm).exists());
        NamedSemaphore::unlink(&name).unwrap();
    }

    #[test]
    fn a_fresh_one_replaces_our_leftover_and_gets_the_mode_whatever_the_umask() {
        let name = test_name("fresh");
        let old = NamedSemaphore::open(&name, 0o600).unwrap();
        for _ in 0..3 {
            old.post().unwrap(); // tokens a crashed run left behind
        }
        // SAFETY: umask only changes this process's file creation mask (restored below).
        let umask = unsafe { libc::umask(0) };
        let made = NamedSemaphore::create_fresh(&name, 0o660);
        // SAFETY: as above.
        unsafe { libc::umask(umask) };
        let (fresh, id) = made.unwrap();
        assert!(!fresh.try_wait().unwrap(), "no leftover token survives");
        let shm = shm_file(&name).unwrap();
        assert_eq!(mode_of(&shm), 0o660);
        // A newer listener's semaphore at the same name is left alone.
        NamedSemaphore::unlink(&name).unwrap();
        let (_newer, newer_id) = NamedSemaphore::create_fresh(&name, 0o600).unwrap();
        NamedSemaphore::unlink_if_same(&name, id).unwrap();
        assert!(std::path::Path::new(&shm).exists());
        NamedSemaphore::unlink_if_same(&name, newer_id).unwrap();
        assert!(!std::path::Path::new(&shm).exists());
    }

    #[test]
    fn a_symlink_at_the_name_is_never_followed() {
        let name = test_name("link");
        let shm = shm_file(&name).unwrap();
        let victim = std::env::temp_dir().join(format!("ipcez-victim-{}", std::process::id()));
        std::fs::write(&victim, b"secret").unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink(&victim, &shm).unwrap();
        let (_sem, id) = NamedSemaphore::create_fresh(&name, 0o666).unwrap();
        assert_eq!(
            mode_of(victim.to_str().unwrap()),
            0o600,
            "the target kept its mode"
        );
        assert_eq!(std::fs::read(&victim).unwrap(), b"secret");
        let meta = std::fs::symlink_metadata(&shm).unwrap();
        assert!(meta.file_type().is_file());
        assert_eq!(meta.mode() & 0o777, 0o666);
        NamedSemaphore::unlink_if_same(&name, id).unwrap();
        std::fs::remove_file(&victim).unwrap();
    }

    #[test]
    fn a_name_held_by_another_user_is_a_clear_error() {
        if euid() != 0 {
            eprintln!("skipped: needs root to give a file to another user");
            return;
        }
        let name = test_name("squat");
        let shm = shm_file(&name).unwrap();
        let sem = NamedSemaphore::open(&name, 0o666).unwrap();
        std::os::unix::fs::chown(&shm, Some(65534), Some(65534)).unwrap();
        let err = NamedSemaphore::create_fresh(&name, 0o600).unwrap_err();
        let text = err.to_string();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        assert!(text.contains(&name), "{text}");
        assert!(text.contains("uid 65534"), "{text}");
        assert!(text.contains(&format!("sudo rm {shm}")), "{text}");
        assert_eq!(
            std::fs::metadata(&shm).unwrap().uid(),
            65534,
            "left in place"
        );
        drop(sem);
        NamedSemaphore::unlink(&name).unwrap();
    }
}
