//! Socket paths longer than a Unix socket address holds (`sun_path`: 107 bytes and a NUL on
//! Linux). `bind(2)` and `connect(2)` take such a path through a short alias: an `O_PATH`
//! descriptor of its directory, named `/proc/self/fd/N/<file name>`. Listening and
//! connecting both go through here, so a path one side can use the other can too, and a
//! path neither can use is refused by both with the same message.

use std::ffi::CString;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Longest path `bind(2)` and `connect(2)` take (sun_path is 108 bytes with the NUL).
pub(crate) const SUN_PATH_MAX: usize = 107;

/// The address to give `bind`/`connect` for a socket path: the path itself when it fits,
/// else the alias through its directory's descriptor, valid while this value lives.
#[derive(Debug)]
pub(crate) struct SocketPath {
    address: PathBuf,
    _dir: Option<OwnedFd>,
}

impl SocketPath {
    /// The address for `path`; an `InvalidInput` error saying what to do when the path is
    /// too long and no alias can reach it (a file name too long for one, or no `/proc`).
    pub(crate) fn new(path: &Path) -> io::Result<Self> {
        if path.as_os_str().len() <= SUN_PATH_MAX {
            return Ok(SocketPath {
                address: path.to_path_buf(),
                _dir: None,
            });
        }
        let name = path
            .file_name()
            .ok_or_else(|| too_long(path, "it names no file"))?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let fd = open_dir(dir)?;
        let alias = Path::new(&format!("/proc/self/fd/{}", raw(&fd))).join(name);
        if alias.as_os_str().len() > SUN_PATH_MAX {
            return Err(too_long(
                path,
                &format!(
                    "its file name ({} bytes) is too long to reach it through its directory",
                    name.len()
                ),
            ));
        }
        if std::fs::symlink_metadata(format!("/proc/self/fd/{}", raw(&fd))).is_err() {
            return Err(too_long(
                path,
                "/proc is not mounted to reach it through its directory",
            ));
        }
        Ok(SocketPath {
            address: alias,
            _dir: Some(fd),
        })
    }

    /// What to pass to `bind`/`connect`.
    pub(crate) fn address(&self) -> &Path {
        &self.address
    }
}

fn raw(fd: &OwnedFd) -> i32 {
    std::os::fd::AsRawFd::as_raw_fd(fd)
}

#[cfg(target_os = "linux")]
const DIR_FLAGS: libc::c_int = libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC;
#[cfg(not(target_os = "linux"))]
const DIR_FLAGS: libc::c_int = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC;

/// An `O_PATH` descriptor of `dir` (search permission is all it needs, like a path).
fn open_dir(dir: &Path) -> io::Result<OwnedFd> {
    let c = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "the path contains a NUL"))?;
    // SAFETY: `c` is a valid NUL-terminated path; the result is checked and owned below.
    let fd = unsafe { libc::open(c.as_ptr(), DIR_FLAGS) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn too_long(path: &Path, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "the socket path is {} bytes, more than the {SUN_PATH_MAX} a Unix socket address \
             holds, and {why}; use a shorter path (e.g. a shorter directory or file name)",
            path.as_os_str().len()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_path_is_its_own_address() {
        let p = Path::new("/tmp/x.sock");
        assert_eq!(SocketPath::new(p).unwrap().address(), p);
    }

    #[test]
    fn a_long_path_goes_through_its_directory() {
        let dir = std::env::temp_dir().join("d".repeat(120));
        let p = dir.join("s.sock");
        std::fs::create_dir_all(&dir).unwrap();
        let a = SocketPath::new(&p).unwrap();
        let shown = a.address().to_str().unwrap().to_owned();
        assert!(
            shown.starts_with("/proc/self/fd/") && shown.ends_with("/s.sock"),
            "{shown}"
        );
        assert!(shown.len() <= SUN_PATH_MAX);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_name_too_long_for_the_alias_is_refused_with_advice() {
        let p = std::env::temp_dir().join("n".repeat(110));
        let e = SocketPath::new(&p).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("use a shorter path"), "{e}");
    }

    #[test]
    fn a_missing_directory_is_not_found() {
        let p = Path::new("/nonexistent-ipcez")
            .join("d".repeat(120))
            .join("s");
        assert_eq!(
            SocketPath::new(&p).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }
}
