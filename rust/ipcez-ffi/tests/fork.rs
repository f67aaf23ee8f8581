//! The C ABI across fork() and with a stuck handler: handles made before a fork fail with
//! IPCEZ_ERROR_KIND_FORKED in the child and closing or freeing them there leaves the
//! parent's connection, socket file and semaphores alone; a close returns within about a
//! second even when the handler never returns, and the handler is not called again.
#![cfg(unix)]

use std::ffi::c_void;
use std::ptr::null_mut;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

use ipcez_ffi::*;

/// The tests fork, so they run one at a time, in a process whose environment selects
/// the local Unix transport.
fn setup() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    static ENV: Once = Once::new();
    let guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    // SAFETY: set once, before any ipcez call of this process reads the environment.
    ENV.call_once(|| unsafe {
        std::env::set_var("IPCEZ_TARGET", "local");
        std::env::set_var("IPCEZ_OS", "linux");
    });
    guard
}

fn sock_path(name: &str) -> String {
    let dir = std::env::temp_dir().join(format!("ipcez-ffi-fork-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name).to_str().unwrap().to_string()
}

/// Takes an error out of a failed call: (kind, message).
fn take_err(err: *mut ipcez_error) -> (u32, String) {
    assert!(!err.is_null());
    unsafe {
        let code = ipcez_error_code(err);
        let mut ptr = std::ptr::null();
        let n = ipcez_error_message(err, &mut ptr);
        let text = String::from_utf8_lossy(std::slice::from_raw_parts(ptr, n)).into_owned();
        ipcez_error_free(err);
        (code, text)
    }
}

fn listen(path: &str) -> *mut ipcez_listener {
    let (mut l, mut err) = (null_mut(), null_mut());
    let rc = unsafe {
        ipcez_listen(
            path.as_ptr(),
            path.len(),
            0o600,
            std::ptr::null(),
            0,
            std::ptr::null(),
            0,
            5000,
            &mut l,
            &mut err,
        )
    };
    assert_eq!(
        rc,
        ipcez_result::Ok,
        "{:?}",
        (!err.is_null()).then(|| take_err(err))
    );
    l
}

fn connect(path: &str) -> *mut ipcez_socket {
    let (mut s, mut err) = (null_mut(), null_mut());
    let rc = unsafe { ipcez_connect(path.as_ptr(), path.len(), 5000, &mut s, &mut err) };
    assert_eq!(
        rc,
        ipcez_result::Ok,
        "{:?}",
        (!err.is_null()).then(|| take_err(err))
    );
    s
}

fn accept(l: *mut ipcez_listener) -> *mut ipcez_socket {
    let (mut s, mut err) = (null_mut(), null_mut());
    let rc = unsafe { ipcez_listener_accept(l, 10_000, &mut s, &mut err) };
    assert_eq!(rc, ipcez_result::Ok);
    s
}

fn send(s: *mut ipcez_socket, data: &[u8]) -> Result<(), (u32, String)> {
    let mut err = null_mut();
    match unsafe { ipcez_socket_send(s, data.as_ptr(), data.len(), u32::MAX, &mut err) } {
        ipcez_result::Ok => Ok(()),
        _ => Err(take_err(err)),
    }
}

fn recv(s: *mut ipcez_socket) -> Result<Vec<u8>, (u32, String)> {
    let (mut msg, mut data, mut len, mut err) = (null_mut(), std::ptr::null(), 0, null_mut());
    match unsafe { ipcez_socket_recv(s, 10_000, &mut msg, &mut data, &mut len, &mut err) } {
        ipcez_result::Ok => {
            let v = unsafe { std::slice::from_raw_parts(data, len) }.to_vec();
            unsafe { ipcez_message_free(msg) };
            Ok(v)
        }
        ipcez_result::Timeout => Err((0, "timeout".into())),
        _ => Err(take_err(err)),
    }
}

fn wait_child(pid: libc::pid_t) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut status = 0;
        if unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == pid {
            assert!(libc::WIFEXITED(status), "child died: status {status:#x}");
            return libc::WEXITSTATUS(status);
        }
        if Instant::now() > deadline {
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("child hung");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn handles_made_before_fork_are_detached_in_the_child() {
    let _serial = setup();
    let path = sock_path("detach.sock");
    let l = listen(&path);
    let client = connect(&path);
    let server = accept(l);
    send(client, b"before").unwrap();
    assert_eq!(recv(server).unwrap(), b"before");

    let pid = unsafe { libc::fork() };
    if pid == 0 {
        unsafe { libc::alarm(10) };
        let code = std::panic::catch_unwind(|| {
            let forked = ipcez_error_kind::Forked as u32;
            let (kind, text) = send(client, b"x").unwrap_err();
            assert_eq!(kind, forked, "{text}");
            assert!(
                text.contains("created before fork; connect again in the child"),
                "{text}"
            );
            assert_eq!(recv(server).unwrap_err().0, forked);
            let (mut s, mut err) = (null_mut(), null_mut());
            let rc = unsafe { ipcez_listener_accept(l, 0, &mut s, &mut err) };
            assert_eq!((rc, take_err(err).0), (ipcez_result::Error, forked));
            assert!(unsafe { ipcez_socket_is_closed(client) });
            // None of this may touch the parent's connection, file or semaphores.
            unsafe {
                ipcez_socket_close(client);
                ipcez_socket_free(client);
                ipcez_socket_free(server);
                ipcez_listener_free(l);
            }
            // The child's own connection to the parent's listener works.
            let mine = connect(&path);
            send(mine, b"from the child").unwrap();
            assert_eq!(recv(mine).unwrap(), b"pong");
            // The last word, then stay until the parent hangs up: a side that closes right
            // after taking a message may do so before the library acked it.
            send(mine, b"done").unwrap();
            assert_eq!(
                recv(mine).unwrap_err().0,
                ipcez_error_kind::ConnectionLost as u32
            );
            0
        })
        .unwrap_or(101);
        unsafe { libc::_exit(code) };
    }
    let peer = accept(l);
    assert_eq!(recv(peer).unwrap(), b"from the child");
    send(peer, b"pong").unwrap();
    assert_eq!(recv(peer).unwrap(), b"done");
    unsafe { ipcez_socket_free(peer) };
    assert_eq!(wait_child(pid), 0);

    send(client, b"after").unwrap();
    assert_eq!(recv(server).unwrap(), b"after");
    assert!(std::path::Path::new(&path).exists());
    unsafe {
        ipcez_socket_free(client);
        ipcez_socket_free(server);
        ipcez_listener_free(l);
    }
    assert!(
        !std::path::Path::new(&path).exists(),
        "the parent's own close cleans up"
    );
}

static CALLS: AtomicUsize = AtomicUsize::new(0);

/// A handler whose first call is stuck for 2 s (far beyond the close grace of 1 s).
unsafe extern "C" fn stuck(_: *mut c_void, _: *const u8, _: usize, _: *const ipcez_error) {
    if CALLS.fetch_add(1, Ordering::SeqCst) == 0 {
        std::thread::sleep(Duration::from_secs(2));
    }
}

#[test]
fn close_leaves_a_stuck_handler_behind_within_a_second() {
    let _serial = setup();
    let path = sock_path("stuck.sock");
    let l = listen(&path);
    let client = connect(&path);
    let server = accept(l);
    let mut err = null_mut();
    let rc = unsafe { ipcez_socket_set_handler(server, Some(stuck), null_mut(), &mut err) };
    assert_eq!(rc, ipcez_result::Ok);
    send(client, b"first").unwrap();
    send(client, b"second").unwrap();
    while CALLS.load(Ordering::SeqCst) == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let start = Instant::now();
    unsafe { ipcez_socket_free(server) };
    let took = start.elapsed();
    assert!(took < Duration::from_millis(1500), "close took {took:?}");
    assert!(
        took >= Duration::from_millis(900),
        "close gave up too early: {took:?}"
    );
    // The stuck call returns after 2 s; no call (message or final) follows it.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(CALLS.load(Ordering::SeqCst), 1);
    unsafe {
        ipcez_socket_free(client);
        ipcez_listener_free(l);
    }
}
