//! Load, faults and hostile input against one listener (issue "prove nothing is lost and
//! nobody gets in"). Sizes are reduced for CI; `IPCEZ_LOAD_MESSAGES` raises them
//! (the full runs live in `bench/load.py`).
#![cfg(unix)]

mod common;

use std::io;
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use ipcez::{ConnectOptions, ListenOptions, Resolution, SocketError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

fn load_messages() -> u32 {
    std::env::var("IPCEZ_LOAD_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150)
}

/// `clients` connections × `messages` each through one listener: every message arrives
/// exactly once, in per-connection order, and no send times out.
async fn load(r: Resolution, clients: usize, messages: u32) {
    let listener = listen(&r).await;
    let addr = Resolution {
        transport: r.transport,
        address: listener.address().to_string(),
    };
    let receivers: Vec<_> = (0..clients)
        .map(|_| {
            let listener = listener.clone();
            tokio::spawn(async move {
                let server = listener.accept().await.unwrap();
                let first = server.recv().await.unwrap();
                let client = String::from_utf8(first).unwrap();
                for i in 0..messages {
                    let m = server.recv().await.unwrap();
                    assert_eq!(m, format!("{client}:{i}").into_bytes(), "order of {client}");
                }
                client
            })
        })
        .collect();
    let senders: Vec<_> = (0..clients)
        .map(|c| {
            let addr = addr.clone();
            tokio::spawn(async move {
                let s = connect(&addr).await;
                s.send_message(c.to_string().as_bytes()).await.unwrap();
                for i in 0..messages {
                    s.send_message(format!("{c}:{i}").as_bytes()).await.unwrap();
                }
                s
            })
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    for r in receivers {
        assert!(seen.insert(r.await.unwrap()), "each client arrives once");
    }
    assert_eq!(seen.len(), clients);
    for s in senders {
        s.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_64_clients_over_unix() {
    within(
        300,
        load(unix(&socket_path("load.sock")), 64, load_messages()),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_64_clients_over_websocket() {
    within(300, load(ws("ws://127.0.0.1:0/load"), 64, load_messages())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_connections_on_one_listener() {
    within(120, async {
        let path = socket_path("idle.sock");
        let listener = listen(&unix(&path)).await;
        let mut clients = Vec::new();
        let mut servers = Vec::new();
        for _ in 0..1000 {
            clients.push(connect(&unix(&path)).await);
            servers.push(listener.accept().await.unwrap());
        }
        // All still alive: the last and the first can talk.
        clients[999].send_message(b"last").await.unwrap();
        assert_eq!(servers[999].recv().await.unwrap(), b"last");
        servers[0].send_message(b"first").await.unwrap();
        assert_eq!(clients[0].recv().await.unwrap(), b"first");
    })
    .await
}

#[tokio::test]
async fn a_reader_that_stops_taking_makes_senders_time_out_with_bounded_memory() {
    within(60, async {
        let path = socket_path("stalled.sock");
        let opts = ListenOptions {
            connection: ConnectOptions::default().queue_limits(8, 1 << 20),
            ..Default::default()
        };
        let listener = opts.listen_on(&unix(&path)).await.unwrap();
        let client = ConnectOptions::default()
            .ack_timeout(Duration::from_millis(150))
            .connect_to(&unix(&path))
            .await
            .unwrap();
        let _server = listener.accept().await.unwrap(); // never takes anything
        let mut acked = 0;
        let timed_out = loop {
            match client.send_message(&[7; 100]).await {
                Ok(()) => acked += 1,
                Err(e) => break e,
            }
            assert!(acked < 100, "the queue bound (8) was not enforced");
        };
        assert!(
            matches!(timed_out, SocketError::RecipientAckTimeout),
            "{timed_out:?}"
        );
        // The reader waits for room before it reads: exactly the 8 queued were acked.
        assert_eq!(acked, 8);
    })
    .await
}

#[tokio::test]
async fn clients_see_a_listener_restart_and_can_reconnect() {
    within(30, async {
        let path = socket_path("restart.sock");
        let listener = listen(&unix(&path)).await;
        let client = connect(&unix(&path)).await;
        let server = listener.accept().await.unwrap();
        listener.close();
        drop(server); // the old process's connections go with it
        let e = client.recv().await.unwrap_err();
        assert!(is_connection_lost(&e), "{e:?}");

        let listener = listen(&unix(&path)).await;
        let client = connect(&unix(&path)).await;
        let server = listener.accept().await.unwrap();
        client.send_message(b"again").await.unwrap();
        assert_eq!(server.recv().await.unwrap(), b"again");
    })
    .await
}

/// One hostile connection and one good one on the same listener: the hostile one gets its
/// error, the good one does not notice.
async fn good_connection_still_works(listener: &ipcez::Listener, r: &Resolution) {
    let client = connect(r).await;
    let server = listener.accept().await.unwrap();
    client.send_message(b"still fine").await.unwrap();
    assert_eq!(server.recv().await.unwrap(), b"still fine");
}

#[tokio::test]
async fn a_frame_dribbled_one_byte_per_write_arrives_whole() {
    within(30, async {
        let path = socket_path("dribble.sock");
        let listener = listen(&unix(&path)).await;
        let mut raw = tokio::net::UnixStream::connect(&path).await.unwrap();
        let server = listener.accept().await.unwrap();
        let msg = b"dribbled message";
        let mut frame = (msg.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(msg);
        for b in frame {
            raw.write_all(&[b]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert_eq!(server.recv().await.unwrap(), msg);
    })
    .await
}

#[tokio::test]
async fn silent_and_garbage_connections_do_not_disturb_others() {
    within(30, async {
        let path = socket_path("garbage.sock");
        let listener = listen(&unix(&path)).await;
        let _silent = tokio::net::UnixStream::connect(&path).await.unwrap();
        let silent_server = listener.accept().await.unwrap();
        let mut garbage = tokio::net::UnixStream::connect(&path).await.unwrap();
        let garbage_server = listener.accept().await.unwrap();
        garbage
            .write_all(b"\xde\xad\xbe\xef garbage that is no frame")
            .await
            .unwrap();
        let e = garbage_server.recv().await.unwrap_err();
        assert!(
            matches!(&e, SocketError::Io(io) if io.kind() == io::ErrorKind::InvalidData),
            "{e:?}"
        );
        good_connection_still_works(&listener, &unix(&path)).await;
        assert!(!silent_server.is_closed());
    })
    .await
}

#[tokio::test]
async fn oversized_websocket_message_closes_only_that_connection() {
    within(30, async {
        let listener = listen(&ws("ws://127.0.0.1:0/big")).await;
        let (mut raw, _) = tokio_tungstenite::connect_async(listener.address())
            .await
            .unwrap();
        let server = listener.accept().await.unwrap();
        let big = vec![0u8; ipcez::MAX_MESSAGE_LEN + 1];
        // The send runs on its own (ipcez reads the rest of it only to throw it away).
        let sending = tokio::spawn(async move {
            let sent = raw.send(Message::Binary(big.into())).await;
            (raw, sent)
        });
        let e = server.recv().await.unwrap_err();
        assert!(
            matches!(&e, SocketError::Io(io) if io.kind() == io::ErrorKind::InvalidData
                && io.to_string().contains("4 MiB")),
            "{e:?}"
        );
        // ipcez closed that connection with 1009, and the sender sees that code.
        let (mut raw, _) = sending.await.unwrap();
        let close = loop {
            match raw.next().await {
                Some(Ok(Message::Close(frame))) => break frame,
                Some(Ok(_)) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        };
        assert_eq!(close.map(|f| u16::from(f.code)), Some(1009));
        good_connection_still_works(&listener, &ws(listener.address())).await;
    })
    .await
}

#[tokio::test]
async fn malformed_handshakes_are_dropped_and_the_listener_goes_on() {
    within(30, async {
        let listener = listen(&ws("ws://127.0.0.1:0/hs")).await;
        let hostport = listener.address()["ws://".len()..]
            .trim_end_matches("/hs")
            .to_string();
        for (junk, status) in [
            (&b"\x16\x03\x01 not http at all\r\n\r\n"[..], "400"),
            (b"GET /hs HTTP/1.1\r\nHost: x\r\n\r\n", "426"), // no Upgrade
            (
                b"POST /hs HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
                "426",
            ),
        ] {
            let mut raw = tokio::net::TcpStream::connect(&hostport).await.unwrap();
            raw.write_all(junk).await.unwrap();
            let mut response = Vec::new();
            let _ =
                tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut response)).await;
            let text = String::from_utf8_lossy(&response);
            assert!(
                text.starts_with(&format!("HTTP/1.1 {status}")) && text.contains("ipcez: "),
                "unexpected answer to junk: {text}"
            );
        }
        good_connection_still_works(&listener, &ws(listener.address())).await;
    })
    .await
}

/// Regression: a reader paused on a full queue reads nothing, so it used to miss a peer
/// that went away until somebody took a message.
#[tokio::test]
async fn a_reader_paused_on_a_full_queue_still_notices_the_peer_leaving() {
    within(30, async {
        let path = socket_path("paused.sock");
        let opts = ListenOptions {
            connection: ConnectOptions::default().queue_limits(2, 1 << 20),
            ..Default::default()
        };
        let listener = opts.listen_on(&unix(&path)).await.unwrap();
        let client = connect(&unix(&path)).await;
        let server = listener.accept().await.unwrap();
        client.send_message(b"1").await.unwrap();
        client.send_message(b"2").await.unwrap(); // the queue is full now
        client.close();
        let started = std::time::Instant::now();
        while !server.is_closed() {
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "the loss went unnoticed"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // What was queued is still delivered, then the end.
        assert_eq!(server.recv().await.unwrap(), b"1");
        assert_eq!(server.recv().await.unwrap(), b"2");
        assert!(is_connection_lost(&server.recv().await.unwrap_err()));
    })
    .await
}
