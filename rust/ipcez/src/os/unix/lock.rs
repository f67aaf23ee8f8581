//! The advisory lock a Unix listener holds on its path while it sets up: listeners
//! starting on one path take turns, so the one that finds the path live leaves it alone
//! instead of replacing the semaphores of one that has not bound yet.

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The lock file of the socket at `canonical`: `.<name>.lock` beside it.
pub(crate) fn lock_path(canonical: &Path) -> PathBuf {
    let mut name = OsString::from(".");
    name.push(canonical.file_name().unwrap_or_default());
    name.push(".lock");
    canonical.with_file_name(name)
}

/// A held lock on a listener's path; its file is removed and the lock released when
/// dropped.
#[derive(Debug)]
pub(crate) struct PathLock {
    path: PathBuf,
    file: File,
}

impl PathLock {
    /// Takes the lock at `path`, waiting up to `wait` for another listener's setup (a
    /// holder that takes longer is stuck: an `AddrInUse` error).
    pub(crate) async fn acquire(path: &Path, wait: Duration) -> io::Result<Self> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(lock) = Self::try_acquire(path)? {
                return Ok(lock);
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "another listener has been starting on this path for more than {} s \
                         (it holds {})",
                        wait.as_secs_f64(),
                        path.display()
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Takes the lock at `path` without waiting. `Ok(None)` when another process (or
    /// another listener of this one) holds it.
    fn try_acquire(path: &Path) -> io::Result<Option<Self>> {
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
}

impl Drop for PathLock {
    /// Removes the lock file while it is still the one held, then lets go of the lock.
    fn drop(&mut self) {
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

    #[tokio::test]
    async fn one_holder_at_a_time_and_the_file_goes_with_it() {
        let d = std::env::temp_dir().join(format!("ipcez-lock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir(&d).unwrap();
        let path = lock_path(&d.join("s.sock"));
        assert_eq!(path, d.join(".s.sock.lock"));
        let first = PathLock::acquire(&path, Duration::ZERO).await.unwrap();
        assert!(PathLock::try_acquire(&path).unwrap().is_none(), "held");
        let e = PathLock::acquire(&path, Duration::from_millis(20))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        // A waiter gets it once the holder is done.
        let waiter = {
            let path = path.clone();
            tokio::spawn(async move { PathLock::acquire(&path, Duration::from_secs(5)).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(first);
        let second = waiter.await.unwrap().unwrap();
        assert!(path.exists());
        drop(second);
        assert!(!path.exists(), "the file goes with the lock");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
