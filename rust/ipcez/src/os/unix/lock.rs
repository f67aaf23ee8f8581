//! The advisory lock a Unix listener holds on its path for its whole life: listeners
//! starting on one path take turns setting up, and a held lock means a live ipcez
//! listener, so a second one is refused without touching the socket or the semaphores.

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The lock file of the socket at `canonical`: `.<name>.lock` beside it.
pub(crate) fn lock_path(canonical: &Path) -> PathBuf {
    let mut name = OsString::from(".");
    name.push(canonical.file_name().unwrap_or_default());
    name.push(".lock");
    canonical.with_file_name(name)
}

/// A held lock on a listener's path; released when dropped.
#[derive(Debug)]
pub(crate) struct PathLock {
    path: PathBuf,
    file: File,
}

impl PathLock {
    /// Takes the lock at `path` without waiting. `Ok(None)` when another process (or
    /// another listener of this one) holds it.
    pub(crate) fn try_acquire(path: &Path) -> io::Result<Option<Self>> {
        // A holder may remove the file as it closes, after we opened it: the lock we then
        // take is on a file nobody else will find, so open the path again.
        for _ in 0..8 {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .create(true)
                .write(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(path)?;
            // SAFETY: flock on a descriptor this function owns.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                    return Ok(None);
                }
                return Err(e);
            }
            let held = file.metadata()?;
            match std::fs::symlink_metadata(path) {
                Ok(now) if now.dev() == held.dev() && now.ino() == held.ino() => {
                    return Ok(Some(PathLock {
                        path: path.to_path_buf(),
                        file,
                    }));
                }
                _ => continue,
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!(
                "cannot lock {}: it is replaced each time it is opened",
                path.display()
            ),
        ))
    }

    /// Removes the lock file while it is still the one held (the lock itself goes on drop).
    pub(crate) fn remove(&self) {
        let ours = match (self.file.metadata(), std::fs::symlink_metadata(&self.path)) {
            (Ok(held), Ok(now)) => held.dev() == now.dev() && held.ino() == now.ino(),
            _ => false,
        };
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_the_file_goes_while_ours() {
        let d = std::env::temp_dir().join(format!("ipcez-lock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir(&d).unwrap();
        let path = lock_path(&d.join("s.sock"));
        assert_eq!(path, d.join(".s.sock.lock"));
        let first = PathLock::try_acquire(&path).unwrap().expect("free");
        assert!(PathLock::try_acquire(&path).unwrap().is_none(), "held");
        first.remove();
        assert!(!path.exists());
        // A newer holder's file is left alone by the older one.
        let second = PathLock::try_acquire(&path).unwrap().expect("free again");
        first.remove();
        assert!(path.exists());
        drop(first);
        assert!(
            PathLock::try_acquire(&path).unwrap().is_none(),
            "still held"
        );
        second.remove();
        drop(second);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
