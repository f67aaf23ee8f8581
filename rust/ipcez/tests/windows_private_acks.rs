//! The private acks of named pipes (Windows; run under Wine by `python build.py test
//! --windows`): between two ipcez endpoints each connection's acks are its own, whatever
//! other clients of the pipe do and whatever is signalled on the pipe's named events; a
//! custom peer never sees any of it.
#![cfg(windows)]

mod common;
mod win32;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use ipcez::{ConnectOptions, ListenOptions, Resolution, SocketError, pipe_ack_names};
use win32::{Event, RawPipe, RawServer};

/// More than a connection nobody accepted may read: its reader stops inside this message,
/// so the message is never read whole until `accept`.
const UNREAD: usize = 100 * 1024;

fn short_acks(ms: u64) -> ConnectOptions {
    ConnectOptions::default().ack_timeout(Duration::from_millis(ms))
}

/// Signals both named events of `r` as fast as it can until `stop`; returns how often.
fn forge(r: &Resolution, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<usize> {
    let (ready, acked) = pipe_ack_names(&r.address);
    std::thread::spawn(move || {
        let (ready, acked) = (Event::open(&ready), Event::open(&acked));
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            acked.set();
            ready.set();
            n += 1;
            if n % 64 == 0 {
                std::thread::yield_now();
            }
        }
        n
    })
}

/// One client sends as fast as it can while another client of the same pipe waits for the
/// ack of a message the listener cannot read yet: the busy client gets every ack (no false
/// timeout), the stalled one none (no false ack) until its message is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_client_beside_a_busy_one_gets_no_ack_of_the_other() {
    within(120, async {
        const MESSAGES: usize = 300;
        let r = pipe("stall");
        let listener = listen(&r).await;
        let busy = short_acks(5000).connect_to(&r).await.unwrap();
        let busy_server = listener.accept().await.unwrap();
        // Not accepted: its reader stops within the first message.
        let stalled = short_acks(1500).connect_to(&r).await.unwrap();
        let big = vec![7u8; UNREAD];
        let waiting = tokio::spawn({
            let stalled = stalled.clone();
            async move {
                let t = Instant::now();
                (stalled.send_message(&big).await, t.elapsed())
            }
        });
        let mut false_timeouts = 0;
        for i in 0..MESSAGES {
            if busy.send_message(format!("m{i}").as_bytes()).await.is_err() {
                false_timeouts += 1;
            }
        }
        let (stalled_result, waited) = waiting.await.unwrap();
        println!("busy: {MESSAGES} sends, {false_timeouts} not acked; stalled: {stalled_result:?} after {waited:?}");
        assert_eq!(false_timeouts, 0, "every read message of the busy client is acked");
        assert!(
            matches!(stalled_result, Err(SocketError::RecipientAckTimeout)),
            "the stalled client's unread message must not be acked: {stalled_result:?}"
        );
        assert!(waited >= Duration::from_millis(1400), "{waited:?}");
        for i in 0..MESSAGES {
            assert_eq!(busy_server.recv().await.unwrap(), format!("m{i}").into_bytes());
        }
        // Once accepted, the stalled message arrives whole, and the connection goes on.
        let stalled_server = listener.accept().await.unwrap();
        assert_eq!(stalled_server.recv().await.unwrap().len(), UNREAD);
        stalled.send_message(b"after").await.unwrap();
        assert_eq!(stalled_server.recv().await.unwrap(), b"after");
    })
    .await
}

/// Another process signalling `data_acked` (and `data_ready`) without pause, before and
/// while ipcez endpoints talk: no send between them is acked by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_signals_on_the_named_events_ack_nothing_between_ipcez_endpoints() {
    within(120, async {
        let r = pipe("forge");
        let listener = listen(&r).await;
        let stop = Arc::new(AtomicBool::new(false));
        let forger = forge(&r, stop.clone());
        // Both directions of an accepted pair work, every message read once.
        let client = short_acks(5000).connect_to(&r).await.unwrap();
        let server = listener.accept().await.unwrap();
        for i in 0..50 {
            server
                .send_message(format!("s{i}").as_bytes())
                .await
                .unwrap();
            client
                .send_message(format!("c{i}").as_bytes())
                .await
                .unwrap();
        }
        for i in 0..50 {
            assert_eq!(client.recv().await.unwrap(), format!("s{i}").into_bytes());
            assert_eq!(server.recv().await.unwrap(), format!("c{i}").into_bytes());
        }
        // A message nobody reads: three tries, none acked.
        let unread = short_acks(500).connect_to(&r).await.unwrap();
        let mut false_acks = 0;
        for _ in 0..3 {
            match unread.send_message(&vec![1u8; UNREAD]).await {
                Ok(()) => false_acks += 1,
                Err(SocketError::RecipientAckTimeout) => {}
                Err(e) => panic!("{e:?}"),
            }
        }
        stop.store(true, Ordering::Relaxed);
        let forged = forger.join().unwrap();
        println!("{forged} forged signals on each event; {false_acks} false acks");
        assert!(forged > 100, "the forger ran: {forged}");
        assert_eq!(false_acks, 0);
    })
    .await
}

/// An ipcez client of a custom (raw Win32) server: the server reads exactly the frames
/// sent, nothing before or between them, and acks through the named events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_win32_server_sees_only_frames_from_an_ipcez_client() {
    within(30, async {
        let r = pipe("rawsrv");
        let server = RawServer::create(&r.address);
        let (ready_name, acked_name) = pipe_ack_names(&r.address);
        let (ready, acked) = (
            win32::Event::create(&ready_name),
            win32::Event::create(&acked_name),
        );
        let peer = std::thread::spawn(move || {
            let pipe = server.accept();
            for expected in [&b"one"[..], b"two", b""] {
                assert_eq!(pipe.read_frame(), expected, "exactly the frames sent");
                assert!(
                    ready.wait(Duration::from_secs(5)),
                    "data_ready after each frame"
                );
                acked.set();
            }
            pipe.write_frame(b"from raw");
            ready.set();
            assert!(
                acked.wait(Duration::from_secs(5)),
                "ipcez acks on data_acked"
            );
            assert_eq!(pipe.available(), 0, "nothing but frames arrived");
            pipe
        });
        let client = ConnectOptions::default().connect_to(&r).await.unwrap();
        for m in [&b"one"[..], b"two", b""] {
            client.send_message(m).await.unwrap();
        }
        assert_eq!(client.recv().await.unwrap(), b"from raw");
        let pipe = win32::join(peer).await;
        drop(pipe);
    })
    .await
}

/// The listener's first send to a raw client, before the client wrote anything: acked
/// through the named events once the raw client signals (it is no ipcez client).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_client_that_only_reads_is_acked_through_the_named_events() {
    within(30, async {
        let r = pipe("rawread");
        let listener = listen(&r).await;
        let (ready_name, acked_name) = pipe_ack_names(&r.address);
        let address = r.address.clone();
        let peer = std::thread::spawn(move || {
            let pipe = RawPipe::connect(&address);
            let (ready, acked) = (Event::open(&ready_name), Event::open(&acked_name));
            for _ in 0..3 {
                let _ = pipe.read_frame();
                assert!(ready.wait(Duration::from_secs(5)));
                acked.set();
            }
            pipe
        });
        let server = listener.accept().await.unwrap();
        for m in [&b"a"[..], b"b", b"c"] {
            let t = Instant::now();
            server.send_message(m).await.unwrap();
            assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        }
        drop(win32::join(peer).await);
    })
    .await
}

/// The peer goes away while a send waits for its ack: the send ends with `ConnectionLost`
/// (never a false ack, never the full timeout), and what the peer sent before is still
/// received, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_loss_during_an_ack_wait_loses_nothing() {
    within(60, async {
        let r = pipe("loss");
        let mut opts = ListenOptions::default();
        opts.connection = short_acks(10_000);
        let listener = opts.listen_on(&r).await.unwrap();
        // What the peer sent before it went is kept.
        let client = short_acks(10_000).connect_to(&r).await.unwrap();
        let server = listener.accept().await.unwrap();
        for i in 0..5 {
            server
                .send_message(format!("{i}").as_bytes())
                .await
                .unwrap();
        }
        // A send the listener cannot read (a second, unaccepted connection) ...
        let waiting_client = short_acks(10_000).connect_to(&r).await.unwrap();
        let waiting = tokio::spawn(async move {
            let t = Instant::now();
            (
                waiting_client.send_message(&vec![2u8; UNREAD]).await,
                t.elapsed(),
            )
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        // ... then the listener and the accepted connection go.
        server.close();
        listener.close();
        drop(listener);
        let (result, waited) = waiting.await.unwrap();
        println!("send during peer loss: {result:?} after {waited:?}");
        assert!(result.as_ref().is_err_and(is_connection_lost), "{result:?}");
        assert!(
            waited < Duration::from_secs(5),
            "seen long before the ack timeout: {waited:?}"
        );
        for i in 0..5 {
            assert_eq!(client.recv().await.unwrap(), format!("{i}").into_bytes());
        }
        let e = client.recv().await.unwrap_err();
        assert!(is_connection_lost(&e), "{e:?}");
    })
    .await
}

/// Both ends send large messages at the same time, from several tasks each: an ack record
/// waits for a frame of ours being written, never the other way round, so nothing stalls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_ends_sending_large_messages_at_once_all_get_acked() {
    within(120, async {
        const EACH: usize = 8;
        let r = pipe("both");
        let (_l, client, server) = pair(&r).await;
        let big = Arc::new(vec![5u8; 1024 * 1024]);
        let mut senders = Vec::new();
        for end in [&client, &server] {
            for _ in 0..2 {
                let (end, big) = (end.clone(), big.clone());
                senders.push(tokio::spawn(async move {
                    for _ in 0..EACH {
                        end.send_message(&big).await.unwrap();
                    }
                }));
            }
        }
        let t = Instant::now();
        for end in [&client, &server] {
            for _ in 0..2 * EACH {
                assert_eq!(end.recv().await.unwrap().len(), big.len());
            }
        }
        for s in senders {
            s.await.unwrap();
        }
        println!("2 × {} MiB each way in {:?}", 2 * EACH, t.elapsed());
    })
    .await
}

/// A receiver that takes a message and closes at once does not take its ack with it: the
/// ack is on the wire before the message can be taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_closing_right_after_the_last_message_leaves_its_ack() {
    within(60, async {
        let r = pipe("lastack");
        let listener = listen(&r).await;
        let mut lost = 0;
        for round in 0..30 {
            let client = connect(&r).await;
            let server = listener.accept().await.unwrap();
            let sending = tokio::spawn(async move { client.send_message(b"last").await });
            assert_eq!(server.recv().await.unwrap(), b"last");
            server.close();
            if let Err(e) = sending.await.unwrap() {
                println!("round {round}: {e:?}");
                lost += 1;
            }
        }
        assert_eq!(lost, 0, "sends of a delivered message that were not acked");
    })
    .await
}
