//! The socket file of a Unix listener: created where nobody else can reach it, given its
//! mode there, then put into place; removed on close only while it is still ours.

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[cfg(test)]
use super::sockpath::SUN_PATH_MAX;
use super::sockpath::SocketPath;

/// Adds the path and a hint for a connecting client to an I/O error, keeping its kind (and
/// so its errno mapping).
pub(crate) fn with_path(e: io::Error, what: &str, path: &str) -> io::Error {
    let hint = match e.kind() {
        io::ErrorKind::NotFound => "; is the listener running, and is the path right?",
        io::ErrorKind::ConnectionRefused => {
            "; nothing listens on it (a stale socket file, or not a socket)"
        }
        io::ErrorKind::PermissionDenied => "; check the socket file's permissions",
        _ => "",
    };
    io::Error::new(e.kind(), format!("{what} {path}: {e}{hint}"))
}

/// [`with_path`] for a listener: the hints are about the directory it binds in.
pub(crate) fn listen_error(e: io::Error, path: &str) -> io::Error {
    let hint = match e.kind() {
        io::ErrorKind::NotFound => "; does its directory exist?",
        io::ErrorKind::PermissionDenied => "; check the permissions of its directory",
        _ => "",
    };
    io::Error::new(e.kind(), format!("cannot listen on {path}: {e}{hint}"))
}

/// A socket file this listener put in place, by device and inode.
#[derive(Debug)]
pub(crate) struct BoundFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
    /// The bound socket, kept open until the file is removed: while it is, its inode
    /// cannot be reused, so a newer file at the path never has our device and inode.
    _pin: std::os::fd::OwnedFd,
}

impl BoundFile {
    /// Removes the file while it is still the one this listener bound (a newer listener's
    /// socket at the same path is left alone).
    pub(crate) fn remove(&self) {
        let ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|meta| meta.dev() == self.dev && meta.ino() == self.ino);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Binds and listens on `absolute` with exactly `mode`, whatever the umask: the socket is
/// made in a new directory beside the target that only this user can enter (0700), given
/// its mode there, then linked into place (which fails instead of replacing a file that
/// appeared meanwhile). The stale/live/not-a-socket rules of [`clear_stale`] apply.
pub(crate) fn bind_exclusive(
    absolute: &Path,
    mode: u32,
    shown: &str,
) -> io::Result<(std::os::unix::net::UnixListener, BoundFile)> {
    remove_leftover_dirs(absolute.parent().unwrap_or(Path::new("/")));
    // A second listener racing us to the path: check again, once.
    for attempt in 0..2 {
        clear_stale(absolute, shown)?;
        match bind_once(absolute, mode) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt == 0 => continue,
            Err(e) => return Err(listen_error(e, shown)),
            ok => return ok,
        }
    }
    unreachable!("the loop returns on its second attempt")
}

fn bind_once(
    target: &Path,
    mode: u32,
) -> io::Result<(std::os::unix::net::UnixListener, BoundFile)> {
    let parent = target.parent().unwrap_or(Path::new("/"));
    let dir = PrivateDir::new(parent)?;
    let tmp = dir.path.join("s");
    let listener = std::os::unix::net::UnixListener::bind(SocketPath::new(&tmp)?.address())?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
    let meta = std::fs::symlink_metadata(&tmp)?;
    match std::fs::hard_link(&tmp, target) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(e),
        // A file system without hard links: a rename, after checking the path is free.
        Err(_) => {
            if std::fs::symlink_metadata(target).is_ok() {
                return Err(io::ErrorKind::AlreadyExists.into());
            }
            std::fs::rename(&tmp, target)?;
        }
    }
    let pin = std::os::fd::AsFd::as_fd(&listener).try_clone_to_owned()?;
    Ok((
        listener,
        BoundFile {
            path: target.to_path_buf(),
            dev: meta.dev(),
            ino: meta.ino(),
            _pin: pin,
        },
    ))
}

/// The name of a private bind directory, up to its random part.
const BIND_DIR_PREFIX: &str = ".ipcez-bind-";

/// How old a bind directory must be to count as left over: a listener is done with its own
/// in milliseconds.
const LEFTOVER_AGE: std::time::Duration = std::time::Duration::from_secs(30);

/// Removes the private bind directories in `parent` that a crashed listener left: named
/// like ours, this user's, mode 0700, not touched for a while, and whose socket (if any)
/// nobody answers on. Anything else is left alone; failures are ignored.
fn remove_leftover_dirs(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let matches = name.to_str().is_some_and(|n| {
            n.strip_prefix(BIND_DIR_PREFIX).is_some_and(|rest| {
                rest.len() == 6 && rest.bytes().all(|b| b.is_ascii_alphanumeric())
            })
        });
        let dir = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&dir) else {
            continue;
        };
        let old = meta
            .modified()
            .ok()
            .and_then(|m| m.elapsed().ok())
            .is_some_and(|age| age >= LEFTOVER_AGE);
        if !matches
            || !meta.file_type().is_dir()
            || meta.uid() != me
            || meta.mode() & 0o7777 != 0o700
            || !old
        {
            continue;
        }
        let sock = dir.join("s");
        match std::fs::symlink_metadata(&sock) {
            Ok(m) if m.file_type().is_socket() => {
                if !matches!(probe(&sock), Err(e) if e.kind() == io::ErrorKind::ConnectionRefused) {
                    continue;
                }
                let _ = std::fs::remove_file(&sock);
            }
            Ok(_) => continue, // not ours to judge
            Err(_) => {}
        }
        let _ = std::fs::remove_dir(&dir);
    }
}

/// A fresh 0700 directory beside the target, removed (with what is in it) when dropped.
struct PrivateDir {
    path: PathBuf,
}

impl PrivateDir {
    fn new(parent: &Path) -> io::Result<Self> {
        let mut template = parent
            .join(format!("{BIND_DIR_PREFIX}XXXXXX"))
            .into_os_string()
            .into_vec();
        template.push(0);
        // SAFETY: `template` is a writable NUL-terminated buffer; mkdtemp replaces the X's.
        let p = unsafe { libc::mkdtemp(template.as_mut_ptr().cast()) };
        if p.is_null() {
            return Err(io::Error::last_os_error());
        }
        template.pop();
        Ok(PrivateDir {
            path: PathBuf::from(OsString::from_vec(template)),
        })
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.path.join("s"));
        let _ = std::fs::remove_dir(&self.path);
    }
}

/// The error for a path another listener serves.
fn in_use(shown: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::AddrInUse,
        format!(
            "cannot listen on {shown}: another process is listening on it; stop it or choose \
             another path"
        ),
    )
}

/// Makes room for a new socket at `path`: a socket file nobody answers on is removed; a
/// live one, or anything that is not a socket, is an error and left untouched.
pub(crate) fn clear_stale(absolute: &Path, shown: &str) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(absolute) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(with_path(e, "cannot inspect", shown)),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "cannot listen on {shown}: it exists and is not a socket; remove it or choose \
                 another path (ipcez leaves it untouched)"
            ),
        ));
    }
    match probe(absolute) {
        Ok(()) => Err(in_use(shown)),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => std::fs::remove_file(absolute)
            .or_else(|e| match e.kind() {
                io::ErrorKind::NotFound => Ok(()),
                _ => Err(with_path(e, "cannot remove the stale socket", shown)),
            }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(with_path(e, "cannot check the existing socket", shown)),
    }
}

/// Connects to `path` without waiting: `Ok` when something listens there, even with a full
/// backlog (a blocking connect would wait until it accepts, maybe forever).
fn probe(path: &Path) -> io::Result<()> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;
    let short = SocketPath::new(path)?;
    // SAFETY: sockaddr_un is plain data; all-zero is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    let bytes = short.address().as_os_str().as_bytes();
    debug_assert!(
        bytes.len() < addr.sun_path.len(),
        "SocketPath keeps within sun_path"
    );
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (dst, &b) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = b as libc::c_char;
    }
    // SAFETY: plain socket(2) call; the result is checked and owned below.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: `addr` is a valid sockaddr_un of `len` bytes.
    let rc = unsafe {
        libc::connect(
            sock.as_raw_fd(),
            (&raw const addr).cast::<libc::sockaddr>(),
            len,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    match io::Error::last_os_error() {
        // Listening, with no room in its backlog right now.
        e if matches!(
            e.raw_os_error(),
            Some(libc::EAGAIN | libc::EINPROGRESS | libc::EINTR)
        ) =>
        {
            Ok(())
        }
        e => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(what: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ipcez-bind-{what}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir(&d).unwrap();
        d
    }

    fn entries(d: &Path) -> Vec<String> {
        let mut v: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn the_file_appears_with_its_mode_and_goes_only_while_ours() {
        let d = dir("mode");
        let target = d.join("s.sock");
        let (listener, file) = bind_exclusive(&target, 0o600, "s.sock").unwrap();
        let meta = std::fs::symlink_metadata(&target).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(
            entries(&d),
            ["s.sock"],
            "no private directory is left behind"
        );
        std::os::unix::net::UnixStream::connect(&target).unwrap();
        // Live: a second listener is refused and the file stays.
        let e = bind_exclusive(&target, 0o600, "s.sock").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        // A newer socket at the path (someone removed ours meanwhile) is left alone on close.
        std::fs::remove_file(&target).unwrap();
        let (_newer, newer) = bind_exclusive(&target, 0o600, "s.sock").unwrap();
        file.remove();
        assert!(target.exists());
        newer.remove();
        assert!(!target.exists());
        drop(listener);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn stale_sockets_go_other_files_stay() {
        let d = dir("stale");
        let target = d.join("s.sock");
        drop(std::os::unix::net::UnixListener::bind(&target).unwrap()); // stale now
        let (_l, file) = bind_exclusive(&target, 0o640, "s.sock").unwrap();
        assert_eq!(
            std::fs::metadata(&target).unwrap().permissions().mode() & 0o777,
            0o640
        );
        file.remove();
        std::fs::write(&target, b"data").unwrap();
        let e = bind_exclusive(&target, 0o600, "s.sock").unwrap_err();
        assert!(e.to_string().contains("not a socket"), "{e}");
        assert_eq!(std::fs::read(&target).unwrap(), b"data");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn only_a_crashed_listeners_bind_dirs_are_removed() {
        let d = dir("leftover");
        let old = std::time::SystemTime::now() - 2 * LEFTOVER_AGE;
        let make = |name: &str, mode: u32, sock: Option<bool>, age| {
            let p = d.join(name);
            std::fs::create_dir(&p).unwrap();
            let live = sock.map(|live| {
                let l = std::os::unix::net::UnixListener::bind(p.join("s")).unwrap();
                live.then_some(l)
            });
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            std::fs::File::open(&p).unwrap().set_modified(age).unwrap();
            live.flatten()
        };
        let now = std::time::SystemTime::now();
        make(".ipcez-bind-dead01", 0o700, Some(false), old);
        make(".ipcez-bind-empty1", 0o700, None, old);
        let _live = make(".ipcez-bind-live01", 0o700, Some(true), old);
        make(".ipcez-bind-fresh1", 0o700, Some(false), now);
        make(".ipcez-bind-wide01", 0o755, Some(false), old);
        make(".ipcez-bind-toolong", 0o700, Some(false), old);
        make("ipcez-bind-other1", 0o700, Some(false), old);
        let (_l, file) = bind_exclusive(&d.join("s.sock"), 0o600, "s.sock").unwrap();
        assert_eq!(
            entries(&d),
            [
                ".ipcez-bind-fresh1",
                ".ipcez-bind-live01",
                ".ipcez-bind-toolong",
                ".ipcez-bind-wide01",
                "ipcez-bind-other1",
                "s.sock"
            ]
        );
        file.remove();
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_path_near_the_length_limit_still_binds() {
        let d = dir("long");
        let name = "x".repeat(SUN_PATH_MAX - d.as_os_str().len() - 1);
        let target = d.join(&name);
        assert_eq!(target.as_os_str().len(), SUN_PATH_MAX);
        let (_l, file) = bind_exclusive(&target, 0o600, &name).unwrap();
        std::os::unix::net::UnixStream::connect(&target).unwrap();
        file.remove();
        std::fs::remove_dir_all(&d).unwrap();
    }
}
