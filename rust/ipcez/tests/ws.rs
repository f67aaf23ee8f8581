//! The WebSocket transport end to end, with ipcez on both ends (interoperability with
//! other WebSocket implementations is tested from Python against the `websockets` package).

mod common;

use std::io;

use common::*;
use ipcez::{MAX_MESSAGE_LEN, SocketError, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn port_zero_reports_the_real_address() {
    let listener = listen(&ws("ws://127.0.0.1:0/demo")).await;
    assert_eq!(listener.transport(), Transport::WebSocket);
    let addr = listener.address();
    assert!(
        addr.starts_with("ws://127.0.0.1:") && addr.ends_with("/demo"),
        "{addr}"
    );
    assert!(!addr.contains(":0/"), "{addr}");
}

#[tokio::test]
async fn round_trips_every_size_up_to_the_limit() {
    within(60, async {
        let (_l, client, server) = pair(&ws("ws://127.0.0.1:0/rt")).await;
        assert_eq!(client.transport(), Transport::WebSocket);
        for len in [0, 1, 64 * 1024, MAX_MESSAGE_LEN] {
            let msg: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
            client.send_message(&msg).await.unwrap();
            assert_eq!(server.recv().await.unwrap(), msg, "client→server {len}");
            server.send_message(&msg).await.unwrap();
            assert_eq!(client.recv().await.unwrap(), msg, "server→client {len}");
        }
        let e = client
            .send_message(&vec![0; MAX_MESSAGE_LEN + 1])
            .await
            .unwrap_err();
        assert!(
            matches!(&e, SocketError::Io(io) if io.kind() == io::ErrorKind::InvalidInput),
            "{e:?}"
        );
        client.send_message(b"after").await.unwrap();
        assert_eq!(server.recv().await.unwrap(), b"after");
    })
    .await
}

#[tokio::test]
async fn other_paths_get_404_and_the_listener_goes_on() {
    within(30, async {
        let listener = listen(&ws("ws://127.0.0.1:0/only")).await;
        let hostport = listener.address().trim_start_matches("ws://").trim_end_matches("/only").to_string();
        let mut raw = tokio::net::TcpStream::connect(&hostport).await.unwrap();
        raw.write_all(
            format!(
                "GET /other HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let mut response = Vec::new();
        let _ = raw.read_to_end(&mut response).await;
        let response = String::from_utf8_lossy(&response);
        assert!(response.starts_with("HTTP/1.1 404"), "{response}");

        let e = ipcez::ConnectOptions::default()
            .connect_to(&ws(&listener.address().replace("/only", "/nope")))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("404"), "{e}");

        let client = connect(&ws(listener.address())).await;
        let server = listener.accept().await.unwrap();
        client.send_message(b"ok").await.unwrap();
        assert_eq!(server.recv().await.unwrap(), b"ok");
    })
    .await
}

#[tokio::test]
async fn peer_close_is_one_connection_lost() {
    within(30, async {
        let (_l, client, server) = pair(&ws("ws://127.0.0.1:0/x")).await;
        server.disconnect().await;
        let e = client.recv().await.unwrap_err();
        assert!(is_connection_lost(&e), "{e:?}");
        // The peer's close code comes along: `close` sends 1000, normal closure.
        let SocketError::Io(io) = &e else {
            panic!("{e:?}")
        };
        let close = io
            .get_ref()
            .and_then(|d| d.downcast_ref::<ipcez::PeerClosed>());
        assert_eq!(close.map(|c| c.code), Some(1000), "{e}");
        assert!(e.to_string().contains("1000"), "{e}");
        assert!(is_connection_lost(
            &client.send_message(b"x").await.unwrap_err()
        ));
    })
    .await
}

#[tokio::test]
async fn refused_connection_keeps_its_kind() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let e = ipcez::ConnectOptions::default()
        .connect_to(&ws(&format!("ws://127.0.0.1:{port}/")))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, SocketError::Io(io) if io.kind() == io::ErrorKind::ConnectionRefused),
        "{e:?}"
    );
}

#[tokio::test]
async fn wss_listening_without_a_certificate_is_a_clear_error() {
    let e = ipcez::ListenOptions::default()
        .listen_on(&ws("wss://127.0.0.1:0/"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("certificate"), "{e}");
}

#[tokio::test]
async fn the_scheme_is_case_insensitive_for_connect_too() {
    within(30, async {
        let listener = listen(&ws("ws://127.0.0.1:0/case")).await;
        let upper = listener.address().replacen("ws://", "WS://", 1);
        let client = connect(&ws(&upper)).await;
        let server = listener.accept().await.unwrap();
        client.send_message(b"shout").await.unwrap();
        assert_eq!(server.recv().await.unwrap(), b"shout");
    })
    .await
}

fn keepalive(ms: u64) -> ipcez::ConnectOptions {
    ipcez::ConnectOptions {
        ws_keepalive: std::time::Duration::from_millis(ms),
        ..Default::default()
    }
}

/// A peer that is still connected but never answers (what a silent network drop looks
/// like from this side) is declared lost after two keepalive periods.
#[tokio::test]
async fn a_silent_peer_is_lost_after_the_keepalive() {
    within(30, async {
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = tcp.local_addr().unwrap().port();
        let silent = tokio::spawn(async move {
            let (stream, _) = tcp.accept().await.unwrap();
            // Upgrade, then never poll the stream again: no pong ever goes out.
            let ws = tokio_tungstenite::accept_async(stream).await.unwrap();
            tokio::time::sleep(std::time::Duration::from_secs(20)).await;
            drop(ws);
        });
        let client = keepalive(100)
            .connect_to(&ws(&format!("ws://127.0.0.1:{port}/")))
            .await
            .unwrap();
        let started = std::time::Instant::now();
        let e = client.recv().await.unwrap_err();
        assert!(is_connection_lost(&e), "{e:?}");
        let took = started.elapsed();
        assert!(
            took >= std::time::Duration::from_millis(150)
                && took < std::time::Duration::from_secs(5),
            "{took:?}"
        );
        silent.abort();
    })
    .await
}

#[tokio::test]
async fn an_idle_but_live_peer_survives_many_keepalive_periods() {
    within(30, async {
        let listener = ipcez::ListenOptions {
            connection: keepalive(50),
            ..Default::default()
        }
        .listen_on(&ws("ws://127.0.0.1:0/idle"))
        .await
        .unwrap();
        let client = keepalive(50)
            .connect_to(&ws(listener.address()))
            .await
            .unwrap();
        let server = listener.accept().await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(600)).await;
        client.send_message(b"still here").await.unwrap();
        assert_eq!(server.recv().await.unwrap(), b"still here");
        server.send_message(b"me too").await.unwrap();
        assert_eq!(client.recv().await.unwrap(), b"me too");
    })
    .await
}

// -- a thread blocked in `recv_blocking` reads the stream itself (Unix) ----------------

/// Starts `f` on a thread outside the runtime (as a Python thread would call `recv`).
fn on_thread<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> impl std::future::Future<Output = T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    });
    async move {
        match rx.await.expect("the thread ended") {
            Ok(v) => v,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_recv_keeps_an_idle_peer_through_keepalive_periods() {
    within(30, async {
        // Only the client pings; the server's pongs are all it hears, and a thread blocked
        // in `recv_blocking` is the one that reads them.
        let listener = listen(&ws("ws://127.0.0.1:0/idle-blocked")).await;
        let client = keepalive(100)
            .connect_to(&ws(listener.address()))
            .await
            .unwrap();
        let server = listener.accept().await.unwrap();
        let waiting = {
            let client = client.clone();
            on_thread(move || client.recv_blocking(Some(std::time::Duration::from_millis(1500))))
        };
        assert_eq!(
            waiting.await.unwrap(),
            None,
            "timed out with nothing to read"
        );
        let got = {
            let client = client.clone();
            on_thread(move || client.recv_blocking(Some(std::time::Duration::from_secs(5))))
        };
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        server.send_message(b"still here").await.unwrap();
        assert_eq!(got.await.unwrap().as_deref(), Some(&b"still here"[..]));
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_from_another_thread_ends_a_blocked_recv() {
    within(30, async {
        let (_listener, client, _server) = pair(&ws("ws://127.0.0.1:0/close-blocked")).await;
        let blocked = {
            let client = client.clone();
            on_thread(move || client.recv_blocking(None))
        };
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        client.close();
        let e = tokio::time::timeout(std::time::Duration::from_secs(2), blocked)
            .await
            .expect("a recv blocked in another thread must end when the socket closes")
            .unwrap_err();
        assert!(is_connection_lost(&e), "{e:?}");
    })
    .await
}

/// Messages of every size, some split over many reads, taken by a thread that reads the
/// stream itself, in turns with the reader task (which reads whenever that thread is
/// between calls): every one arrives once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_recv_and_the_reader_task_keep_the_order() {
    within(60, async {
        let (_listener, client, server) = pair(&ws("ws://127.0.0.1:0/order")).await;
        let sizes: Vec<usize> = (0..3000).map(|i| (i * 7919) % 70_000).collect();
        let expected = sizes.clone();
        let reader = on_thread(move || {
            let mut got = Vec::new();
            for (i, _) in expected.iter().enumerate() {
                // A pause now and then lets the reader task queue a few.
                if i % 97 == 0 {
                    std::thread::sleep(std::time::Duration::from_millis(3));
                }
                let m = client
                    .recv_blocking(Some(std::time::Duration::from_secs(20)))
                    .unwrap()
                    .expect("a message within 20 s");
                got.push(m);
            }
            got
        });
        for (i, n) in sizes.iter().enumerate() {
            let mut m = vec![(i % 251) as u8; *n];
            if let Some(first) = m.first_mut() {
                *first = (i % 256) as u8;
            }
            server.send_message(&m).await.unwrap();
        }
        let got = reader.await;
        assert_eq!(got.len(), sizes.len());
        for (i, (m, n)) in got.iter().zip(&sizes).enumerate() {
            assert_eq!(m.len(), *n, "message {i}: length");
            if let Some(first) = m.first() {
                assert_eq!(*first, (i % 256) as u8, "message {i} out of order");
            }
        }
    })
    .await
}

/// The Close frame goes out at once even though a thread was reading the stream when the
/// socket was closed (the reader task takes the stream back from it to say goodbye).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_during_a_blocked_recv_still_says_goodbye() {
    within(30, async {
        let (_listener, client, server) = pair(&ws("ws://127.0.0.1:0/goodbye")).await;
        let blocked = {
            let client = client.clone();
            on_thread(move || client.recv_blocking(None))
        };
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        client.close();
        assert!(blocked.await.is_err());
        let e = tokio::time::timeout(std::time::Duration::from_secs(3), server.recv())
            .await
            .expect("the peer must get the Close frame at once, not after a keepalive")
            .unwrap_err();
        assert!(e.to_string().contains("1000"), "{e}");
    })
    .await
}

/// A thread blocked in `recv` while other threads keep sending on the same connection
/// (the sending half holds the stream now and then): with no keepalive to wake anything,
/// every pair of messages the peer sends must still arrive, the second one too although
/// the socket has nothing more to say once the first was read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_recv_is_not_stalled_by_concurrent_sends() {
    within(120, async {
        let listener = ipcez::ListenOptions {
            connection: keepalive(0),
            ..Default::default()
        }
        .listen_on(&ws("ws://127.0.0.1:0/busy"))
        .await
        .unwrap();
        let client = keepalive(0)
            .connect_to(&ws(listener.address()))
            .await
            .unwrap();
        let server = listener.accept().await.unwrap();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let senders: Vec<_> = (0..2)
            .map(|_| {
                let (client, done) = (client.clone(), done.clone());
                on_thread(move || {
                    let big = vec![7u8; 256 * 1024];
                    while !done.load(std::sync::atomic::Ordering::Acquire) {
                        client.send_frame_blocking(&big).unwrap();
                    }
                })
            })
            .collect();
        let drain = {
            let server = server.clone();
            tokio::spawn(async move { while server.recv().await.is_ok() {} })
        };
        let rounds = 300;
        // The server sends the next pair only once the reader has both of the last one:
        // the socket is quiet meanwhile.
        let (got_pair, mut pair_taken) = tokio::sync::mpsc::channel::<()>(1);
        let reader = {
            let client = client.clone();
            on_thread(move || {
                for i in 0..rounds {
                    for part in 0..2u8 {
                        let m = client
                            .recv_blocking(Some(std::time::Duration::from_secs(10)))
                            .unwrap()
                            .unwrap_or_else(|| panic!("round {i}, message {part}: stalled"));
                        assert_eq!(m, [(i % 256) as u8, part]);
                    }
                    got_pair.blocking_send(()).unwrap();
                }
            })
        };
        let pairs = {
            let server = server.clone();
            tokio::spawn(async move {
                for i in 0..rounds {
                    server.send_message(&[(i % 256) as u8, 0]).await.unwrap();
                    server.send_message(&[(i % 256) as u8, 1]).await.unwrap();
                    if pair_taken.recv().await.is_none() {
                        return;
                    }
                }
            })
        };
        reader.await;
        done.store(true, std::sync::atomic::Ordering::Release);
        for s in senders {
            s.await;
        }
        pairs.await.unwrap();
        drain.abort();
    })
    .await
}
