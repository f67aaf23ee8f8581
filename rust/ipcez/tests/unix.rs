//! The Unix socket transport end to end: framing, acks, loss, hostile peers, the listener.
#![cfg(unix)]

mod common;

use std::ffi::CString;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::*;
use ipcez::{ConnectOptions, ListenOptions, MAX_MESSAGE_LEN, SocketError, unix_ack_names};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn round_trips_every_size_up_to_the_limit() {
    within(60, async {
        let path = socket_path("rt.sock");
        let (_l, client, server) = pair(&unix(&path)).await;
        for len in [0, 1, 64 * 1024, MAX_MESSAGE_LEN] {
            let msg: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            client.send_message(&msg).await.unwrap();
            assert_eq!(server.recv().await.unwrap(), msg, "client→server {len}");
            server.send_message(&msg).await.unwrap();
            assert_eq!(client.recv().await.unwrap(), msg, "server→client {len}");
        }
    })
    .await
}

#[tokio::test]
async fn oversized_send_fails_before_writing_and_the_socket_stays_usable() {
    within(30, async {
        let path = socket_path("big.sock");
        let (_l, client, server) = pair(&unix(&path)).await;
        let e = client
            .send_message(&vec![0; MAX_MESSAGE_LEN + 1])
            .await
            .unwrap_err();
        match &e {
            SocketError::Io(io) => {
                assert_eq!(io.kind(), io::ErrorKind::InvalidInput);
                assert!(io.get_ref().unwrap().is::<ipcez::MessageTooLarge>());
                assert!(io.to_string().contains("4194305"), "{io}");
            }
            other => panic!("{other:?}"),
        }
        client.send_message(b"still fine").await.unwrap();
        assert_eq!(server.recv().await.unwrap(), b"still fine");
    })
    .await
}

/// Raw POSIX semaphore calls for the hand-written peer (deliberately not ipcez's code).
struct RawSem(*mut libc::sem_t);
unsafe impl Send for RawSem {}
impl RawSem {
    fn open(name: &str) -> Self {
        let c = CString::new(name).unwrap();
        let s = unsafe {
            libc::sem_open(
                c.as_ptr(),
                libc::O_CREAT,
                0o600 as libc::c_uint,
                0 as libc::c_uint,
            )
        };
        assert_ne!(s, libc::SEM_FAILED);
        RawSem(s)
    }
    fn post(&self) {
        assert_eq!(unsafe { libc::sem_post(self.0) }, 0);
    }
    /// Polls for a token for up to `timeout`.
    fn wait(&self, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if unsafe { libc::sem_trywait(self.0) } == 0 {
                return true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        false
    }
}

/// A custom peer: a plain tokio UnixListener that speaks the documented frames and posts
/// the semaphores itself. ipcez is the client.
#[tokio::test]
async fn interoperates_with_a_hand_written_peer_in_both_directions() {
    within(30, async {
        let path = socket_path("peer.sock");
        let raw = tokio::net::UnixListener::bind(&path).unwrap();
        let (ready_name, acked_name) = unix_ack_names(&path).unwrap();
        let (ready, acked) = (RawSem::open(&ready_name), RawSem::open(&acked_name));

        let client = connect(&unix(&path)).await;
        let (mut peer, _) = raw.accept().await.unwrap();

        // ipcez → peer: read a frame, check data_ready, post data_acked.
        let sending = tokio::spawn({
            let client = client.clone();
            async move { client.send_message(b"hello peer").await }
        });
        let len = peer.read_u32().await.unwrap();
        let mut body = vec![0; len as usize];
        peer.read_exact(&mut body).await.unwrap();
        assert_eq!(body, b"hello peer");
        assert!(
            ready.wait(Duration::from_secs(2)),
            "ipcez must post data_ready after writing"
        );
        acked.post();
        sending.await.unwrap().unwrap();

        // peer → ipcez: write a frame, post data_ready, expect data_acked.
        peer.write_u32(5).await.unwrap();
        peer.write_all(b"hi yo").await.unwrap();
        ready.post();
        assert_eq!(client.recv().await.unwrap(), b"hi yo");
        let got_ack = tokio::task::spawn_blocking(move || acked.wait(Duration::from_secs(2)));
        assert!(
            got_ack.await.unwrap(),
            "ipcez must post data_acked after reading a message"
        );
    })
    .await
}

#[tokio::test]
async fn a_peer_that_never_acks_gives_recipient_ack_timeout() {
    within(30, async {
        let path = socket_path("noack.sock");
        let raw = tokio::net::UnixListener::bind(&path).unwrap();
        let opts = ConnectOptions::default().ack_timeout(Duration::from_millis(200));
        let client = opts.connect_to(&unix(&path)).await.unwrap();
        let (_peer, _) = raw.accept().await.unwrap();
        let t = Instant::now();
        let e = client.send_message(b"anyone?").await.unwrap_err();
        assert!(matches!(e, SocketError::RecipientAckTimeout), "{e:?}");
        assert!(
            t.elapsed() >= Duration::from_millis(180),
            "{:?}",
            t.elapsed()
        );
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        let _ = std::fs::remove_file(&path);
    })
    .await
}

#[tokio::test]
async fn peer_drop_reaches_the_handler_as_one_error_within_50ms() {
    within(30, async {
        let path = socket_path("drop.sock");
        let (_l, client, server) = pair(&unix(&path)).await;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        client
            .message_handler(move |m| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send((Instant::now(), m));
                }
            })
            .unwrap();
        server.send_message(b"before").await.unwrap();
        assert_eq!(rx.recv().await.unwrap().1.unwrap(), b"before");
        let dropped = Instant::now();
        drop(server);
        let (at, last) = rx.recv().await.unwrap();
        let e = last.unwrap_err();
        assert!(is_connection_lost(&e), "{e:?}");
        let latency = at - dropped;
        println!("peer drop detected after {latency:?}");
        assert!(latency < Duration::from_millis(50), "{latency:?}");
        // Exactly one error, then the handler task stops (its sender is dropped).
        assert!(rx.recv().await.is_none());
        let e = client.send_message(b"x").await.unwrap_err();
        assert!(is_connection_lost(&e), "{e:?}");
    })
    .await
}

/// Child half of `killed_peer_process_is_detected_within_50ms`: connects and waits to be killed.
#[test]
fn killed_peer_child() {
    let Ok(path) = std::env::var("IPCEZ_TEST_CHILD_CONNECT") else {
        return;
    };
    let socket = ConnectOptions::default()
        .connect_blocking(&path)
        .unwrap_or_else(|e| {
            // The child resolves through the environment like any user would.
            panic!("child connect failed: {e}")
        });
    socket.send_frame_blocking(b"child up").unwrap();
    std::thread::sleep(Duration::from_secs(60));
}

#[tokio::test]
async fn killed_peer_process_is_detected_within_50ms() {
    within(30, async {
        let path = socket_path("kill.sock");
        let listener = listen(&unix(&path)).await;
        let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "killed_peer_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("IPCEZ_TEST_CHILD_CONNECT", &path)
            .env("IPCEZ_TARGET", "local")
            .env("IPCEZ_OS", "linux")
            .spawn()
            .unwrap();
        let server = listener.accept().await.unwrap();
        assert_eq!(server.recv().await.unwrap(), b"child up");
        let pending = tokio::spawn({
            let server = server.clone();
            async move {
                let r = server.recv().await;
                (Instant::now(), r)
            }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let killed = Instant::now();
        child.start_kill().unwrap();
        let (at, r) = pending.await.unwrap();
        let e = r.unwrap_err();
        assert!(is_connection_lost(&e), "{e:?}");
        let latency = at.saturating_duration_since(killed);
        println!("SIGKILLed peer detected after {latency:?}");
        assert!(latency < Duration::from_millis(50), "{latency:?}");
        let _ = child.wait().await;
    })
    .await
}

#[tokio::test]
async fn hostile_length_gives_one_invalid_data_error_and_closes() {
    within(30, async {
        let path = socket_path("hostile.sock");
        let listener = listen(&unix(&path)).await;
        let mut raw = tokio::net::UnixStream::connect(&path).await.unwrap();
        let server = listener.accept().await.unwrap();
        raw.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        let e = server.recv().await.unwrap_err();
        match &e {
            SocketError::Io(io) => {
                assert_eq!(io.kind(), io::ErrorKind::InvalidData);
                assert!(io.to_string().contains("4294967295"), "{io}");
            }
            other => panic!("{other:?}"),
        }
        // The connection is closed: the hostile peer sees end-of-stream.
        let mut buf = [0u8; 1];
        assert_eq!(raw.read(&mut buf).await.unwrap(), 0);
        // Other connections are unaffected.
        let good = connect(&unix(&path)).await;
        let good_server = listener.accept().await.unwrap();
        good.send_message(b"fine").await.unwrap();
        assert_eq!(good_server.recv().await.unwrap(), b"fine");
    })
    .await
}

#[tokio::test]
async fn partial_frame_from_a_dying_peer_is_never_delivered() {
    within(30, async {
        let path = socket_path("partial.sock");
        let listener = listen(&unix(&path)).await;
        let mut raw = tokio::net::UnixStream::connect(&path).await.unwrap();
        let server = listener.accept().await.unwrap();
        raw.write_all(&10u32.to_be_bytes()).await.unwrap();
        raw.write_all(b"half").await.unwrap();
        drop(raw);
        let e = server.recv().await.unwrap_err();
        assert!(is_connection_lost(&e), "{e:?}");
    })
    .await
}

#[tokio::test]
async fn listener_socket_file_is_0600_and_removed_with_its_semaphores_on_close() {
    within(30, async {
        let path = socket_path("mode.sock");
        let listener = listen(&unix(&path)).await;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let hash = unix_ack_names(&path)
            .unwrap()
            .0
            .split('.')
            .nth(2)
            .unwrap()
            .to_string();
        let client = connect(&unix(&path)).await;
        let server = listener.accept().await.unwrap();
        client.send_message(b"x").await.unwrap();
        assert_eq!(server.recv().await.unwrap(), b"x");
        assert_eq!(
            shm_semaphores(&hash).len(),
            2,
            "both semaphores exist while listening"
        );
        for s in shm_semaphores(&hash) {
            let mode = std::fs::metadata(format!("/dev/shm/{s}"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{s}");
        }
        listener.close();
        listener.close();
        assert!(!path.exists(), "socket file removed");
        assert_eq!(shm_semaphores(&hash), Vec::<String>::new());
        let e = listener.accept().await.unwrap_err();
        assert!(is_connection_lost(&e), "{e:?}");
    })
    .await
}

#[tokio::test]
async fn custom_mode_is_applied() {
    let path = socket_path("mode2.sock");
    let opts = ListenOptions {
        mode: 0o660,
        ..Default::default()
    };
    let _l = opts.listen_on(&unix(&path)).await.unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o660
    );
}

#[tokio::test]
async fn stale_socket_is_replaced_live_one_is_addr_in_use_other_files_untouched() {
    within(30, async {
        // Stale: a socket file nobody listens on.
        let path = socket_path("stale.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let live = listen(&unix(&path)).await;

        // Live: refused with AddrInUse, and the live listener keeps working.
        let e = ListenOptions::default()
            .listen_on(&unix(&path))
            .await
            .unwrap_err();
        match &e {
            SocketError::Io(io) => {
                assert_eq!(io.kind(), io::ErrorKind::AddrInUse);
                assert!(
                    io.to_string().contains("another process is listening"),
                    "{io}"
                );
            }
            other => panic!("{other:?}"),
        }
        // (The liveness probe was itself a connection; it ended with nothing sent, so
        // `accept` skips it.)
        let c = connect(&unix(&path)).await;
        let s = live.accept().await.unwrap();
        c.send_message(b"ok").await.unwrap();
        assert_eq!(s.recv().await.unwrap(), b"ok");

        // Not a socket: an error, and the file is left as it was.
        let file = socket_path("regular.sock");
        std::fs::write(&file, b"precious").unwrap();
        let e = ListenOptions::default()
            .listen_on(&unix(&file))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("not a socket"), "{e}");
        assert_eq!(std::fs::read(&file).unwrap(), b"precious");
        let dir = socket_path("adir");
        std::fs::create_dir(&dir).unwrap();
        assert!(
            ListenOptions::default()
                .listen_on(&unix(&dir))
                .await
                .is_err()
        );
        assert!(dir.is_dir());
    })
    .await
}

#[tokio::test]
async fn connecting_to_nothing_is_not_found_or_refused() {
    let path = socket_path("nothing.sock");
    let e = ConnectOptions::default()
        .connect_to(&unix(&path))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, SocketError::Io(io) if io.kind() == io::ErrorKind::NotFound),
        "{e:?}"
    );
    assert!(e.to_string().contains("is the listener running"), "{e}");
}

#[tokio::test]
async fn disconnect_is_idempotent_and_fails_later_sends() {
    let path = socket_path("disc.sock");
    let (_l, client, server) = pair(&unix(&path)).await;
    client.disconnect().await;
    client.disconnect().await;
    assert!(client.is_closed());
    assert!(is_connection_lost(
        &client.send_message(b"x").await.unwrap_err()
    ));
    assert!(is_connection_lost(&client.recv().await.unwrap_err()));
    assert!(is_connection_lost(
        &within(5, server.recv()).await.unwrap_err()
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_each_arrive_exactly_once_in_order_without_ack_timeouts() {
    const CLIENTS: usize = 32;
    const MESSAGES: u32 = 200;
    within(120, async {
        let path = socket_path("load.sock");
        let listener = listen(&unix(&path)).await;
        let mut senders = Vec::new();
        for c in 0..CLIENTS {
            let r = unix(&path);
            senders.push(tokio::spawn(async move {
                let s = connect(&r).await;
                for i in 0..MESSAGES {
                    let msg = format!("{c}:{i}");
                    s.send_message(msg.as_bytes()).await.unwrap();
                }
                s
            }));
        }
        let mut receivers = Vec::new();
        for _ in 0..CLIENTS {
            let server = listener.accept().await.unwrap();
            receivers.push(tokio::spawn(async move {
                let mut got = Vec::new();
                for _ in 0..MESSAGES {
                    got.push(String::from_utf8(server.recv().await.unwrap()).unwrap());
                }
                got
            }));
        }
        let mut seen = std::collections::HashSet::new();
        for r in receivers {
            let got = r.await.unwrap();
            let client = got[0].split(':').next().unwrap().to_string();
            let expected: Vec<String> = (0..MESSAGES).map(|i| format!("{client}:{i}")).collect();
            assert_eq!(got, expected, "per-connection order");
            assert!(seen.insert(client), "one connection per client");
        }
        assert_eq!(seen.len(), CLIENTS);
        for s in senders {
            s.await.unwrap();
        }
    })
    .await
}

#[test]
fn blocking_api_works_from_plain_threads() {
    let path = socket_path("blocking.sock");
    let listener = ListenOptions::default().listen_blocking(path.to_str().unwrap());
    // listen_blocking resolves through the environment; without it we use listen_on.
    let listener = match listener {
        Ok(l) => l,
        Err(_) => ipcez::runtime()
            .block_on(ListenOptions::default().listen_on(&unix(&path)))
            .unwrap(),
    };
    let client = ipcez::runtime()
        .block_on(ConnectOptions::default().connect_to(&unix(&path)))
        .unwrap();
    let server = listener
        .accept_blocking(Some(Duration::from_secs(5)))
        .unwrap()
        .unwrap();
    client.send_frame_blocking(b"sync").unwrap();
    assert!(client.wait_ack_blocking(Duration::from_secs(5)).unwrap());
    assert_eq!(
        server
            .recv_blocking(Some(Duration::from_secs(5)))
            .unwrap()
            .unwrap(),
        b"sync"
    );
    assert_eq!(
        server
            .recv_blocking(Some(Duration::from_millis(20)))
            .unwrap(),
        None
    );
    assert!(
        listener
            .accept_blocking(Some(Duration::from_millis(20)))
            .unwrap()
            .is_none()
    );
}

/// A thread in `recv_blocking` reads the socket itself while the background reader takes
/// turns with it; the order must survive every hand-over between the two.
#[test]
fn blocking_receivers_and_the_background_reader_keep_the_order() {
    const N: u32 = 3000;
    let path = socket_path("handover.sock");
    let rt = ipcez::runtime();
    let listener = rt
        .block_on(ListenOptions::default().listen_on(&unix(&path)))
        .unwrap();
    let client = rt
        .block_on(ConnectOptions::default().connect_to(&unix(&path)))
        .unwrap();
    let server = listener
        .accept_blocking(Some(Duration::from_secs(5)))
        .unwrap()
        .unwrap();
    let sender = std::thread::spawn(move || {
        for i in 0..N {
            client.send_frame_blocking(&i.to_be_bytes()).unwrap();
            assert!(
                client.wait_ack_blocking(Duration::from_secs(5)).unwrap(),
                "ack {i}"
            );
            if i.is_multiple_of(500) {
                std::thread::sleep(Duration::from_millis(15)); // let the background reader queue some
            }
        }
        client
    });
    let mut next = 0u32;
    while next < N {
        // Alternate short and zero timeouts so both readers get turns.
        let timeout = if next.is_multiple_of(3) {
            Duration::ZERO
        } else {
            Duration::from_millis(2)
        };
        if let Some(m) = server.recv_blocking(Some(timeout)).unwrap() {
            assert_eq!(u32::from_be_bytes(m.try_into().unwrap()), next);
            next += 1;
        }
    }
    let client = sender.join().unwrap();
    client.close();
    let e = server
        .recv_blocking(Some(Duration::from_secs(5)))
        .unwrap_err();
    assert!(is_connection_lost(&e), "{e:?}");
}

/// Regression: a send cancelled half-way through a frame (a timeout around the future)
/// used to leave the stream mid-frame, so the next frame started inside the old one.
#[tokio::test]
async fn a_send_cancelled_mid_frame_ends_the_connection_instead_of_corrupting_it() {
    within(30, async {
        let path = socket_path("cancel.sock");
        let raw = tokio::net::UnixListener::bind(&path).unwrap();
        let client = connect(&unix(&path)).await;
        let (mut peer, _) = raw.accept().await.unwrap(); // reads nothing for now
        let big = vec![1u8; MAX_MESSAGE_LEN];
        let cut = tokio::time::timeout(Duration::from_millis(100), client.send_message(&big)).await;
        assert!(
            cut.is_err(),
            "the 4 MiB send should still be blocked on a peer that does not read"
        );
        let e = client.send_message(b"next").await.unwrap_err();
        assert!(is_connection_lost(&e), "{e:?}");
        // The peer sees the first frame's header, part of its body, then end-of-stream:
        // never a frame that starts inside another.
        let len = peer.read_u32().await.unwrap() as usize;
        assert_eq!(len, MAX_MESSAGE_LEN);
        let mut rest = Vec::new();
        peer.read_to_end(&mut rest).await.unwrap();
        assert!(
            rest.len() < len && rest.iter().all(|&b| b == 1),
            "{} bytes",
            rest.len()
        );
    })
    .await
}

#[test]
fn waits_of_any_length_do_not_overflow() {
    let path = socket_path("forever.sock");
    let rt = ipcez::runtime();
    let listener = rt
        .block_on(ListenOptions::default().listen_on(&unix(&path)))
        .unwrap();
    let client = rt
        .block_on(ConnectOptions::default().connect_to(&unix(&path)))
        .unwrap();
    let server = listener
        .accept_blocking(Some(Duration::MAX))
        .unwrap()
        .unwrap();
    client.send_frame_blocking(b"x").unwrap();
    assert!(client.wait_ack_blocking(Duration::MAX).unwrap());
    assert_eq!(
        server.recv_blocking(Some(Duration::MAX)).unwrap().unwrap(),
        b"x"
    );
}

/// A blocking send to a peer that is slow to read returns after its write slice and
/// finishes the frame in the background: the frame arrives whole once the peer reads, and
/// the ack wait (in short slices) is what the caller blocks on.
#[test]
fn a_blocking_send_to_a_slow_reader_returns_early_and_the_frame_stays_whole() {
    let path = socket_path("slowreader.sock");
    let raw = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let client = ipcez::runtime()
        .block_on(ConnectOptions::default().connect_to(&unix(&path)))
        .unwrap();
    let (mut peer, _) = raw.accept().unwrap();
    let big: Vec<u8> = (0..MAX_MESSAGE_LEN).map(|i| (i % 253) as u8).collect();
    let started = Instant::now();
    client.send_frame_blocking(&big).unwrap();
    let returned_after = started.elapsed();
    assert!(
        returned_after < Duration::from_millis(1000),
        "{returned_after:?}"
    );
    assert!(
        !client.wait_ack_blocking(Duration::from_millis(20)).unwrap(),
        "nobody acked yet"
    );
    std::thread::sleep(Duration::from_millis(200));
    use std::io::Read;
    let mut len = [0u8; 4];
    peer.read_exact(&mut len).unwrap();
    assert_eq!(u32::from_be_bytes(len) as usize, MAX_MESSAGE_LEN);
    let mut body = vec![0u8; MAX_MESSAGE_LEN];
    peer.read_exact(&mut body).unwrap();
    assert!(body == big, "the frame arrived whole");
}
