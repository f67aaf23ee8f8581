//! The named-pipe transport end to end (Windows; run under Wine by
//! `python build.py test --windows`): sizes, the size limit, the `\\.\pipe\` prefix,
//! several clients, acks through the named events with a hand-written Win32 peer (the
//! private acks between ipcez endpoints: `windows_private_acks.rs`), peer loss, and the
//! resolution table for `os=windows`.
#![cfg(windows)]

mod common;
mod win32;

use std::io;
use std::time::{Duration, Instant};

use common::*;
use ipcez::{
    ConnectOptions, ListenOptions, MAX_MESSAGE_LEN, Os, Resolution, SocketError, Transport, decide,
    pipe_ack_names, pipe_path,
};
use win32::{Event, RawPipe};

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

async fn round_trip(len: usize) {
    within(60, async {
        let (_l, client, server) = pair(&pipe("rt")).await;
        let msg = payload(len);
        client.send_message(&msg).await.unwrap();
        assert_eq!(server.recv().await.unwrap(), msg, "client→server {len}");
        server.send_message(&msg).await.unwrap();
        assert_eq!(client.recv().await.unwrap(), msg, "server→client {len}");
    })
    .await
}

#[tokio::test]
async fn round_trip_of_0_bytes() {
    round_trip(0).await
}

#[tokio::test]
async fn round_trip_of_1_byte() {
    round_trip(1).await
}

#[tokio::test]
async fn round_trip_of_64_kib() {
    round_trip(64 * 1024).await
}

#[tokio::test]
async fn round_trip_of_4_mib() {
    round_trip(MAX_MESSAGE_LEN).await
}

#[tokio::test]
async fn four_mib_plus_one_is_refused_and_the_pipe_stays_usable() {
    within(30, async {
        let (_l, client, server) = pair(&pipe("big")).await;
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

/// A bare name gets `\\.\pipe\` once; a name that has it (any case) is kept; the
/// listener is reachable by the full path with the plain Win32 API.
#[tokio::test]
async fn the_pipe_prefix_is_added_once_and_the_listener_answers_on_the_full_path() {
    within(30, async {
        assert_eq!(pipe_path("svc"), r"\\.\pipe\svc");
        assert_eq!(pipe_path(r"\\.\pipe\svc"), r"\\.\pipe\svc");
        assert_eq!(pipe_path(r"\\.\PIPE\svc"), r"\\.\PIPE\svc");
        assert_eq!(pipe_path(r"\\.\pipe\a\b"), r"\\.\pipe\a\b");
        let r = pipe("prefix");
        assert!(
            r.address.starts_with(r"\\.\pipe\ipcez-test-prefix-"),
            "{r:?}"
        );
        let listener = listen(&r).await;
        assert_eq!(listener.address(), r.address);
        assert_eq!(listener.transport(), Transport::NamedPipe);
        let name = r.address.trim_start_matches(r"\\.\pipe\").to_string();
        // Resolving the already prefixed address gives the same pipe.
        let again = decide(
            &r.address,
            Some(("target", "local")),
            Some(("os", "windows")),
            Os::Windows,
        )
        .unwrap();
        assert_eq!(again.address, r.address);
        let full = format!(r"\\.\pipe\{name}");
        let raw = tokio::task::spawn_blocking(move || RawPipe::connect(&full))
            .await
            .unwrap();
        let server = listener.accept().await.unwrap();
        assert_eq!(server.endpoint(), r.address);
        drop(raw);
    })
    .await
}

/// Several clients on one listener, their messages interleaved: each arrives once, in
/// order, on its own connection, and every send is acked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_serves_several_clients_each_message_once_in_order() {
    within(120, async {
        const CLIENTS: usize = 6;
        const MESSAGES: usize = 30;
        let listener = listen(&pipe("many")).await;
        let addr = Resolution {
            transport: Transport::NamedPipe,
            address: listener.address().to_string(),
        };
        let mut pairs = Vec::new();
        for c in 0..CLIENTS {
            let client = connect(&addr).await;
            client.send_message(c.to_string().as_bytes()).await.unwrap();
            let server = listener.accept().await.unwrap();
            assert_eq!(
                server.recv().await.unwrap(),
                c.to_string().into_bytes(),
                "accept order"
            );
            pairs.push((client, server));
        }
        for i in 0..MESSAGES {
            for (c, (client, _)) in pairs.iter().enumerate() {
                client
                    .send_message(format!("{c}:{i}").as_bytes())
                    .await
                    .unwrap();
            }
        }
        for (c, (_, server)) in pairs.iter().enumerate() {
            for i in 0..MESSAGES {
                assert_eq!(
                    server.recv().await.unwrap(),
                    format!("{c}:{i}").into_bytes()
                );
            }
        }
        // Replies go back to the right client.
        for (c, (client, server)) in pairs.iter().enumerate() {
            server
                .send_message(format!("reply {c}").as_bytes())
                .await
                .unwrap();
            assert_eq!(
                client.recv().await.unwrap(),
                format!("reply {c}").into_bytes()
            );
        }
    })
    .await
}

/// Clients that send at the same moment: every send must still be acked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_senders_to_one_pipe_are_all_acked() {
    within(120, async {
        const CLIENTS: usize = 8;
        const MESSAGES: usize = 40;
        let listener = listen(&pipe("conc")).await;
        let addr = Resolution {
            transport: Transport::NamedPipe,
            address: listener.address().to_string(),
        };
        let senders: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let addr = addr.clone();
                tokio::spawn(async move {
                    let s = connect(&addr).await;
                    for i in 0..MESSAGES {
                        s.send_message(format!("{c}:{i}").as_bytes()).await.unwrap();
                    }
                    s
                })
            })
            .collect();
        let mut servers = Vec::new();
        for _ in 0..CLIENTS {
            servers.push(listener.accept().await.unwrap());
        }
        for s in senders {
            s.await.unwrap();
        }
        let mut total = 0;
        for server in servers {
            while let Ok(Some(_)) =
                tokio::task::block_in_place(|| server.recv_blocking(Some(Duration::ZERO)))
            {
                total += 1;
            }
        }
        assert_eq!(total, CLIENTS * MESSAGES);
    })
    .await
}

/// Clients sending at once while the server takes their messages one client after the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_senders_while_the_server_takes_one_client_at_a_time() {
    within(120, async {
        const CLIENTS: usize = 8;
        const MESSAGES: usize = 40;
        let listener = listen(&pipe("many")).await;
        let addr = Resolution {
            transport: Transport::NamedPipe,
            address: listener.address().to_string(),
        };
        let senders: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let addr = addr.clone();
                tokio::spawn(async move {
                    let s = connect(&addr).await;
                    s.send_message(c.to_string().as_bytes()).await.unwrap();
                    for i in 0..MESSAGES {
                        s.send_message(format!("{c}:{i}").as_bytes()).await.unwrap();
                    }
                    s
                })
            })
            .collect();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..CLIENTS {
            let server = listener.accept().await.unwrap();
            let client = String::from_utf8(server.recv().await.unwrap()).unwrap();
            for i in 0..MESSAGES {
                let m = server.recv().await.unwrap();
                assert_eq!(m, format!("{client}:{i}").into_bytes(), "order of {client}");
            }
            assert!(seen.insert(client), "each client arrives once");
        }
        for s in senders {
            s.await.unwrap();
        }
    })
    .await
}

/// A custom peer written against the raw Win32 API (not ipcez): it connects with
/// `CreateFileW`, reads and writes frames with `ReadFile`/`WriteFile`, and takes part in
/// the ack protocol through `OpenEventW`/`SetEvent` on the documented event names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interoperates_with_a_raw_win32_peer_through_the_named_events() {
    within(30, async {
        let r = pipe("raw");
        let listener = listen(&r).await;
        let (ready_name, acked_name) = pipe_ack_names(&r.address);
        assert!(
            ready_name.starts_with(r"Global\ipcez-test-raw-"),
            "{ready_name}"
        );
        assert!(ready_name.ends_with(".data_ready") && acked_name.ends_with(".data_acked"));
        let address = r.address.clone();
        let peer = std::thread::spawn(move || {
            let pipe = RawPipe::connect(&address);
            // The listener created the events: opening them proves the names match.
            let ready = Event::open(&ready_name);
            let acked = Event::open(&acked_name);
            // ipcez → peer: a frame, then data_ready; the peer acks.
            assert_eq!(pipe.read_frame(), b"hello raw peer");
            assert!(
                ready.wait(Duration::from_secs(5)),
                "ipcez posts data_ready after writing"
            );
            acked.set();
            // peer → ipcez: a frame and data_ready; ipcez must post data_acked.
            pipe.write_frame(b"hi from Win32");
            ready.set();
            assert!(
                acked.wait(Duration::from_secs(5)),
                "ipcez posts data_acked after reading"
            );
            pipe
        });
        let server = listener.accept().await.unwrap();
        server.send_message(b"hello raw peer").await.unwrap();
        assert_eq!(server.recv().await.unwrap(), b"hi from Win32");
        let pipe = win32::join(peer).await;
        drop(pipe);
    })
    .await
}

/// A raw client that reads but never signals `data_acked`: the send fails with
/// `RecipientAckTimeout` after the ack timeout, and the connection stays usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_acking_gives_recipient_ack_timeout() {
    within(30, async {
        let r = pipe("noack");
        let mut opts = ListenOptions::default();
        opts.connection = ConnectOptions::default().ack_timeout(Duration::from_millis(300));
        let listener = opts.listen_on(&r).await.unwrap();
        let address = r.address.clone();
        let peer = tokio::task::spawn_blocking(move || {
            let pipe = RawPipe::connect(&address);
            let first = pipe.read_frame();
            (pipe, first)
        });
        let server = listener.accept().await.unwrap();
        let t = Instant::now();
        let e = server.send_message(b"anyone?").await.unwrap_err();
        assert!(matches!(e, SocketError::RecipientAckTimeout), "{e:?}");
        assert!(
            t.elapsed() >= Duration::from_millis(280),
            "{:?}",
            t.elapsed()
        );
        let (pipe, first) = peer.await.unwrap();
        assert_eq!(first, b"anyone?", "the frame itself was delivered");
        pipe.write_frame(b"still here");
        assert_eq!(server.recv().await.unwrap(), b"still here");
    })
    .await
}

async fn expect_loss_within_50ms(socket: &ipcez::Socket, lose: impl FnOnce()) {
    let pending = tokio::spawn({
        let socket = socket.clone();
        async move {
            let r = socket.recv().await;
            (Instant::now(), r)
        }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    let lost = Instant::now();
    lose();
    let (at, r) = pending.await.unwrap();
    let e = r.unwrap_err();
    assert!(is_connection_lost(&e), "{e:?}");
    let latency = at.saturating_duration_since(lost);
    println!("peer loss seen after {latency:?}");
    assert!(latency < Duration::from_millis(50), "{latency:?}");
    let e = socket.send_message(b"x").await.unwrap_err();
    assert!(is_connection_lost(&e), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_ipcez_client_is_seen_by_the_server_within_50ms() {
    within(30, async {
        let (_l, client, server) = pair(&pipe("lossc")).await;
        client.send_message(b"before").await.unwrap();
        assert_eq!(server.recv().await.unwrap(), b"before");
        expect_loss_within_50ms(&server, move || drop(client)).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_ipcez_server_side_is_seen_by_the_client_within_50ms() {
    within(30, async {
        let (_l, client, server) = pair(&pipe("losss")).await;
        server.send_message(b"before").await.unwrap();
        assert_eq!(client.recv().await.unwrap(), b"before");
        expect_loss_within_50ms(&client, move || server.close()).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_peer_closing_its_handle_is_seen_within_50ms() {
    within(30, async {
        let r = pipe("lossraw");
        let listener = listen(&r).await;
        let address = r.address.clone();
        let raw = tokio::task::spawn_blocking(move || RawPipe::connect(&address))
            .await
            .unwrap();
        let server = listener.accept().await.unwrap();
        expect_loss_within_50ms(&server, move || drop(raw)).await;
    })
    .await
}

#[tokio::test]
async fn connecting_to_a_missing_pipe_names_it() {
    within(30, async {
        let r = pipe("missing");
        let e = ConnectOptions::default().connect_to(&r).await.unwrap_err();
        match &e {
            SocketError::Io(io) => {
                assert_eq!(io.kind(), io::ErrorKind::NotFound, "{io}");
                assert!(io.to_string().contains(&r.address), "{io}");
            }
            other => panic!("{other:?}"),
        }
    })
    .await
}

#[tokio::test]
async fn a_second_listener_on_the_same_pipe_is_refused() {
    within(30, async {
        let r = pipe("twice");
        let first = listen(&r).await;
        let second = ListenOptions::default().listen_on(&r).await;
        if win32::is_wine() {
            // Wine ignores FILE_FLAG_FIRST_PIPE_INSTANCE, so there is nothing to refuse it with.
            println!("under Wine a second listener is not refused: {second:?}");
            drop(second);
        } else {
            let e = second.unwrap_err();
            assert!(e.to_string().contains(&r.address), "{e}");
        }
        // The first one still works.
        let client = connect(&r).await;
        let server = first.accept().await.unwrap();
        client.send_message(b"ok").await.unwrap();
        assert_eq!(server.recv().await.unwrap(), b"ok");
    })
    .await
}

/// The resolution table on a Windows build, and the table's other rows.
#[test]
fn resolution_table_for_os_windows() {
    assert_eq!(Os::BUILD, Os::Windows);
    let local = Some(("target", "local"));
    let r = decide("svc", local, Some(("os", "windows")), Os::Windows).unwrap();
    assert_eq!(r.transport, Transport::NamedPipe);
    assert_eq!(r.address, r"\\.\pipe\svc");
    let r = decide(
        "svc",
        Some(("target", " LOCAL ")),
        Some(("os", "Windows\n")),
        Os::Windows,
    );
    assert_eq!(
        r.unwrap().address,
        r"\\.\pipe\svc",
        "values are trimmed, any case"
    );
    let e = decide("svc", local, Some(("os", "linux")), Os::Windows).unwrap_err();
    assert!(
        matches!(&e, SocketError::UnsupportedCombination(t, o) if t == "local" && o == "linux"),
        "{e:?}"
    );
    let e = decide(
        "svc",
        Some(("target", "remote")),
        Some(("os", "windows")),
        Os::Windows,
    );
    assert!(
        matches!(e, Err(SocketError::Detection(ref d)) if d.variable == "target"),
        "{e:?}"
    );
    for url in ["ws://127.0.0.1:9/", "WSS://example.com/x"] {
        let r = decide(url, None, None, Os::Windows).unwrap();
        assert_eq!(r.transport, Transport::WebSocket);
    }
    let e = decide("svc", None, Some(("os", "windows")), Os::Windows).unwrap_err();
    assert!(
        matches!(e, SocketError::Detection(ref d) if d.variable == "target"),
        "{e:?}"
    );
    let (ready, acked) = pipe_ack_names("svc");
    assert_eq!(ready, r"Global\svc.data_ready");
    assert_eq!(acked, r"Global\svc.data_acked");
    assert_eq!(pipe_ack_names(r"\\.\pipe\svc"), (ready, acked));
}
