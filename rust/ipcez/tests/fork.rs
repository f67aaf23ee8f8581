//! fork(): the child gets a runtime of its own and connects anew, the parent's runtime,
//! listener and connections go on unharmed, also while the parent is busy sending.
//! The tests run one at a time: a child forked while another test's threads hold a lock
//! it needs (stdout's, for a panic message) could wedge.
#![cfg(unix)]

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::*;
use ipcez::{ConnectOptions, ListenOptions, ProcessEpoch, Resolution, Socket, SocketError};

fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Forks; the child runs `child` under a 10 s alarm (a hang kills it) and exits with its
/// code without running any destructor (101 when it panicked). The parent forgets
/// `child` unrun: what was moved into it stays alive, so the child can drop the last
/// handle of something the parent still serves.
fn fork_child(child: impl FnOnce() -> i32) -> libc::pid_t {
    // SAFETY: the child only runs `child` and then _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        unsafe { libc::alarm(10) };
        let code = catch_unwind(AssertUnwindSafe(child)).unwrap_or(101);
        unsafe { libc::_exit(code) };
    }
    std::mem::forget(child);
    pid
}

/// The child's exit code; fails on a signal or after `secs` (the child is then killed).
fn wait_child(pid: libc::pid_t, secs: u64) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let mut status = 0;
        let done = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if done == pid {
            assert!(libc::WIFEXITED(status), "child died: status {status:#x}");
            return libc::WEXITSTATUS(status);
        }
        if Instant::now() > deadline {
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("child {pid} hung");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn connect_blocking(r: &Resolution) -> Socket {
    ipcez::runtime()
        .block_on(ConnectOptions::default().connect_to(r))
        .unwrap()
}

/// In the child: a new runtime, a new connection to the parent's listener, one exchange.
fn child_round_trip(r: &Resolution, parent: ProcessEpoch, parents_rt: usize) -> i32 {
    if parent.is_current() {
        return 2;
    }
    let rt = ipcez::runtime();
    if std::ptr::from_ref(rt) as usize == parents_rt {
        return 3;
    }
    let socket = connect_blocking(r);
    rt.block_on(socket.send_message(b"from the child")).unwrap();
    if rt.block_on(socket.recv()).unwrap() != b"pong" {
        return 4;
    }
    // The last word is the child's, then it waits for the parent to hang up: a side that
    // closes (or exits) right after taking a message may do so before the library acked
    // it, and the peer's send then fails.
    rt.block_on(socket.send_message(b"done")).unwrap();
    match rt.block_on(socket.recv()) {
        Err(SocketError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => 0,
        _ => 6,
    }
}

/// The parent's side of [`child_round_trip`].
fn serve_one_child(rt: &tokio::runtime::Runtime, listener: &ipcez::Listener) {
    let peer = rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(10), listener.accept()).await })
        .expect("the child never connected")
        .unwrap();
    assert_eq!(rt.block_on(peer.recv()).unwrap(), b"from the child");
    rt.block_on(peer.send_message(b"pong")).unwrap();
    assert_eq!(rt.block_on(peer.recv()).unwrap(), b"done");
    peer.close();
}

/// In the child: the parent's objects refuse to work; closing and dropping them is harmless.
fn use_and_drop((client, server, listener): (Socket, Socket, ipcez::Listener)) -> i32 {
    let refused = |e: SocketError| e.to_string().contains("created before fork; connect again");
    if !client.send_frame_blocking(b"x").is_err_and(refused)
        || !server
            .recv_blocking(Some(Duration::ZERO))
            .is_err_and(refused)
        || !listener
            .accept_blocking(Some(Duration::ZERO))
            .is_err_and(refused)
    {
        return 7;
    }
    client.close();
    server.close();
    listener.close();
    drop((client, server, listener));
    0
}

#[test]
fn children_connect_anew_and_the_parent_is_unharmed() {
    let _serial = one_at_a_time();
    let rt = ipcez::runtime();
    let parents_rt = std::ptr::from_ref(rt) as usize;
    let path = socket_path("fork.sock");
    let r = unix(&path);
    let listener = rt.block_on(ListenOptions::default().listen_on(&r)).unwrap();
    // The parent's own connection is on an endpoint of its own: ack tokens are shared by
    // every connection to an endpoint, so a child's unacked last message would be charged
    // to this busy sender.
    let own_path = socket_path("own.sock");
    let own = rt
        .block_on(ListenOptions::default().listen_on(&unix(&own_path)))
        .unwrap();
    let client = Arc::new(connect_blocking(&unix(&own_path)));
    let server = Arc::new(rt.block_on(own.accept()).unwrap());
    let parent = ProcessEpoch::current();

    // The parent keeps its own connection busy while children come and go.
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let (client, stop) = (client.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                ipcez::runtime()
                    .block_on(client.send_message(&sent.to_le_bytes()))
                    .unwrap();
                sent += 1;
            }
            sent
        })
    };
    let receiver = {
        let server = server.clone();
        std::thread::spawn(move || {
            let mut next = 0u64;
            loop {
                let m = ipcez::runtime().block_on(server.recv()).unwrap();
                if m == b"end" {
                    return next;
                }
                assert_eq!(m, next.to_le_bytes(), "in order, none lost");
                next += 1;
            }
        })
    };

    for _ in 0..20 {
        let pid = fork_child(|| child_round_trip(&r, parent, parents_rt));
        serve_one_child(rt, &listener);
        assert_eq!(wait_child(pid, 10), 0);
        // A child that uses nothing and just exits.
        assert_eq!(wait_child(fork_child(|| 0), 10), 0);
        // A child that tries the inherited objects, closes and drops them.
        let inherited = (
            Socket::clone(&client),
            Socket::clone(&server),
            listener.clone(),
        );
        assert_eq!(
            wait_child(fork_child(move || use_and_drop(inherited)), 10),
            0
        );
    }

    // A child that drops the last handles of a connection and a listener the parent
    // still serves: the parent goes on serving both.
    let extra_client = connect_blocking(&r);
    let extra_server = rt.block_on(listener.accept()).unwrap();
    let extra_path = socket_path("extra.sock");
    let extra_listener = rt
        .block_on(ListenOptions::default().listen_on(&unix(&extra_path)))
        .unwrap();
    let pid = fork_child(move || {
        drop((extra_server, extra_listener));
        0
    });
    assert_eq!(wait_child(pid, 10), 0);
    rt.block_on(extra_client.send_message(b"still served"))
        .expect("the parent's side of the connection still reads and acks");
    let late = connect_blocking(&unix(&extra_path));
    rt.block_on(late.send_message(b"the listener still accepts"))
        .unwrap();

    stop.store(true, Ordering::Relaxed);
    let sent = sender.join().unwrap();
    rt.block_on(client.send_message(b"end")).unwrap();
    assert_eq!(receiver.join().unwrap(), sent);
    assert!(sent > 0);
    assert!(
        path.exists() && own_path.exists(),
        "the socket files are still there"
    );
    assert!(parent.is_current());
}

#[test]
fn a_grandchild_gets_its_own_runtime_too() {
    let _serial = one_at_a_time();
    let path = socket_path("grand.sock");
    let r = unix(&path);
    let rt = ipcez::runtime();
    let listener = rt.block_on(ListenOptions::default().listen_on(&r)).unwrap();
    let parent = ProcessEpoch::current();
    let pid = fork_child(|| {
        let child = ProcessEpoch::current();
        let childs_rt = std::ptr::from_ref(ipcez::runtime()) as usize;
        let grandchild = fork_child(|| {
            if child.is_current() {
                return 5;
            }
            child_round_trip(&r, parent, childs_rt)
        });
        wait_child(grandchild, 10)
    });
    serve_one_child(rt, &listener);
    assert_eq!(wait_child(pid, 10), 0);
}
