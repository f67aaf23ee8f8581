//! The calls for event loops: readiness descriptors, pollers, receives and sends that
//! never wait, receiving into caller memory, and batches of frames.
#![cfg(unix)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use ipcez::{Batch, Listener, MAX_MESSAGE_LEN, Poller, Resolution, Socket};

fn readable(fd: i32, timeout_ms: i32) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut pfd, 1, timeout_ms) == 1 }
}

/// A connected pair from a thread outside the runtime.
fn blocking_pair(name: &str) -> (Listener, Socket, Socket) {
    ipcez::runtime().block_on(pair(&unix(&socket_path(name))))
}

/// Waits (bounded) until `try_recv` gives a message.
fn next(s: &Socket) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(m) = s.try_recv().unwrap() {
            return m;
        }
        assert!(Instant::now() < deadline, "no message within 10 s");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn fileno_is_readable_while_a_message_waits() {
    let (_l, client, server) = blocking_pair("fileno.sock");
    let fd = server.fileno().unwrap();
    assert!(!readable(fd, 50));
    client.send_frame_blocking(b"one").unwrap();
    assert!(client.wait_ack_blocking(Duration::from_secs(5)).unwrap());
    assert!(readable(fd, 5000));
    assert_eq!(server.try_recv().unwrap().unwrap(), b"one");
    assert!(!readable(fd, 50), "taken: nothing waits");
    assert!(server.try_recv().unwrap().is_none());
    client.close();
    assert!(readable(fd, 5000), "the end is readable too");
    assert!(server.try_recv().is_err());
}

#[test]
fn a_poller_hears_each_source_once_per_rise() {
    let path = socket_path("poller.sock");
    let listener = ipcez::runtime().block_on(listen(&unix(&path)));
    let poller = Poller::new().unwrap();
    listener.watch(&poller, 7);
    let client = ipcez::runtime().block_on(connect(&unix(&path)));
    assert!(
        readable(poller.fileno(), 5000),
        "a pending connection reports"
    );
    let mut tokens = [0u64; 8];
    assert_eq!(poller.take(&mut tokens), 1);
    assert_eq!(tokens[0], 7);
    let server = listener
        .try_accept()
        .unwrap()
        .expect("the pending connection");
    assert!(listener.try_accept().unwrap().is_none());
    server.watch(&poller, 9);
    for m in [&b"a"[..], b"b"] {
        client.send_frame_blocking(m).unwrap();
        assert!(client.wait_ack_blocking(Duration::from_secs(5)).unwrap());
    }
    assert!(readable(poller.fileno(), 5000));
    assert_eq!(poller.take(&mut tokens), 1, "two messages, one rise");
    assert_eq!(tokens[0], 9);
    assert!(!readable(poller.fileno(), 0));
    assert_eq!(next(&server), b"a");
    assert_eq!(next(&server), b"b");
    client.close();
    assert!(readable(poller.fileno(), 5000), "the end reports");
    assert_eq!(poller.take(&mut tokens), 1);
}

#[test]
fn recv_into_keeps_a_message_that_does_not_fit() {
    let (_l, client, server) = blocking_pair("into.sock");
    for m in [&b"0123456789"[..], b"next"] {
        client.send_frame_blocking(m).unwrap();
        assert!(client.wait_ack_blocking(Duration::from_secs(5)).unwrap());
    }
    let mut small = [0u8; 4];
    let timeout = Some(Duration::from_secs(5));
    assert_eq!(
        server.recv_into_blocking(&mut small, timeout).unwrap(),
        Some(10)
    );
    assert_eq!(small, [0; 4], "nothing written");
    let mut big = [0u8; 16];
    assert_eq!(
        server.recv_into_blocking(&mut big, timeout).unwrap(),
        Some(10)
    );
    assert_eq!(&big[..10], b"0123456789");
    assert_eq!(
        server.recv_into_blocking(&mut big, timeout).unwrap(),
        Some(4)
    );
    assert_eq!(
        server
            .recv_into_blocking(&mut big, Some(Duration::ZERO))
            .unwrap(),
        None
    );
}

#[test]
fn sends_that_never_wait_keep_their_order_while_the_peer_reads_nothing() {
    use std::io::Read;
    let path = socket_path("order.sock");
    let raw = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let client = ipcez::runtime().block_on(connect(&unix(&path)));
    let (mut peer, _) = raw.accept().unwrap();
    // Far more than the socket buffer holds: most of it goes out later, from the backlog.
    let sizes = [MAX_MESSAGE_LEN, 10, 3 << 20, 0, 5, MAX_MESSAGE_LEN, 1];
    let messages: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| vec![i as u8; n])
        .collect();
    for m in &messages {
        assert!(client.start_send(m).unwrap());
    }
    for m in &messages {
        let mut len = [0u8; 4];
        peer.read_exact(&mut len).unwrap();
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        peer.read_exact(&mut body).unwrap();
        assert!(&body == m, "frames whole and in order");
    }
    client.close();
    for name in [
        ipcez::unix_ack_names(&path).unwrap().0,
        ipcez::unix_ack_names(&path).unwrap().1,
    ] {
        let c = std::ffi::CString::new(name).unwrap();
        // SAFETY: a valid NUL-terminated name.
        unsafe { libc::sem_unlink(c.as_ptr()) };
    }
}

#[test]
fn a_batch_is_written_back_to_back_and_acked_per_message() {
    let (_l, client, server) = blocking_pair("batch.sock");
    let messages: Vec<Vec<u8>> = (0..2000u32).map(|i| i.to_be_bytes().to_vec()).collect();
    let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    client.send_many_frames_blocking(&refs[..1000]).unwrap();
    client.start_send_many(&refs[1000..]).unwrap();
    for m in &messages {
        assert_eq!(&next(&server), m);
    }
    // Each message's own ack, oldest first (the batch's messages are consecutive).
    let last = client.sent_mark();
    for i in (0..messages.len()).rev() {
        let mark = last.before(i);
        assert!(
            client
                .wait_ack_of_blocking(mark, Duration::from_secs(5))
                .unwrap()
        );
    }
    let too_big = vec![0u8; MAX_MESSAGE_LEN + 1];
    assert!(
        client
            .send_many_frames_blocking(&[b"ok", &too_big])
            .is_err()
    );
    assert!(
        server.try_recv().unwrap().is_none(),
        "nothing of a refused batch"
    );
}

#[test]
fn frames_waiting_for_a_peer_that_reads_nothing_stay_bounded() {
    use std::io::Read;
    let path = socket_path("bound.sock");
    let raw = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let client = ipcez::runtime().block_on(connect(&unix(&path)));
    let (mut peer, _) = raw.accept().unwrap();
    let big = vec![7u8; MAX_MESSAGE_LEN];
    // 64 MiB may wait (plus what the socket buffers hold): then sends that must not wait
    // are refused instead of queued.
    let handed_over = (0..40)
        .take_while(|_| client.start_send(&big).unwrap())
        .count();
    assert!(
        (16..=20).contains(&handed_over),
        "{handed_over} frames of 4 MiB queued"
    );
    for _ in 0..handed_over {
        let mut len = [0u8; 4];
        peer.read_exact(&mut len).unwrap();
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        peer.read_exact(&mut body).unwrap();
        assert!(body == big);
    }
    client.close();
    let names = ipcez::unix_ack_names(&path).unwrap();
    for name in [names.0, names.1] {
        let c = std::ffi::CString::new(name).unwrap();
        // SAFETY: a valid NUL-terminated name.
        unsafe { libc::sem_unlink(c.as_ptr()) };
    }
}

#[test]
fn a_batch_takes_what_waits_in_order_and_counts_as_waiting_until_handed_on() {
    let (_l, client, server) = blocking_pair("batch.sock");
    let poller = Poller::new().unwrap();
    server.watch(&poller, 3);
    let fd = server.fileno().unwrap();
    let sent: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 1 + i as usize]).collect();
    for m in &sent {
        client.send_frame_blocking(m).unwrap();
        assert!(client.wait_ack_blocking(Duration::from_secs(5)).unwrap());
    }
    let mut tokens = [0u64; 4];
    assert!(readable(poller.fileno(), 5000));
    assert_eq!(poller.take(&mut tokens), 1);
    // Room for 4 messages and 20 bytes: messages 0..=3 (1 + 2 + 3 + 4 = 10 bytes), then 4
    // and 5 would not fit in the count.
    let (mut buf, mut lens) = ([0u8; 20], [0usize; 4]);
    let timeout = Some(Duration::from_secs(5));
    let got = server
        .recv_batch_blocking(&mut buf, &mut lens, timeout)
        .unwrap();
    assert_eq!(got, Batch::Copied(4));
    assert_eq!(lens, [1, 2, 3, 4]);
    assert_eq!(&buf[..10], &sent[..4].concat()[..]);
    assert!(
        readable(fd, 0),
        "held by the caller: still counts as waiting"
    );
    assert!(
        !readable(poller.fileno(), 0),
        "and the poller is not told again"
    );
    server.set_held(false);
    // Only 20 bytes: 5 + 6 + 7 = 18 fit, 8 more would not.
    let got = server
        .recv_batch_blocking(&mut buf, &mut lens, timeout)
        .unwrap();
    assert_eq!(got, Batch::Copied(3));
    assert_eq!(&lens[..3], &[5, 6, 7]);
    server.set_held(false);
    assert!(readable(fd, 0), "three messages still wait in the socket");
    let (mut few, mut one) = ([0u8; 6], [0usize; 1]);
    let got = server
        .recv_batch_blocking(&mut few, &mut lens, timeout)
        .unwrap();
    assert_eq!(
        got,
        Batch::Whole(sent[7].clone()),
        "too long for the buffer: alone, whole"
    );
    let got = server
        .recv_batch_blocking(&mut buf, &mut one, timeout)
        .unwrap();
    assert_eq!(got, Batch::Copied(1));
    assert_eq!(&buf[..9], &sent[8][..]);
    let got = server
        .recv_batch_blocking(&mut buf, &mut lens, timeout)
        .unwrap();
    assert_eq!(got, Batch::Copied(1));
    assert_eq!(&buf[..10], &sent[9][..]);
    assert!(!readable(fd, 0), "one message is not held: nothing waits");
    let got = server.recv_batch_blocking(&mut buf, &mut lens, Some(Duration::ZERO));
    assert_eq!(got.unwrap(), Batch::TimedOut);
    client.close();
    let end = server.recv_batch_blocking(&mut buf, &mut lens, timeout);
    assert!(end.is_err(), "the end comes on its own: {end:?}");
}

#[test]
fn a_held_batch_is_dropped_by_close() {
    let (_l, client, server) = blocking_pair("batch-close.sock");
    for m in [&b"a"[..], b"b"] {
        client.send_frame_blocking(m).unwrap();
        assert!(client.wait_ack_blocking(Duration::from_secs(5)).unwrap());
    }
    let fd = server.fileno().unwrap();
    let (mut buf, mut lens) = ([0u8; 8], [0usize; 8]);
    let timeout = Some(Duration::from_secs(5));
    // The second message may still be in the socket: take until both are out.
    let mut taken = 0;
    while taken < 2 {
        match server
            .recv_batch_blocking(&mut buf, &mut lens, timeout)
            .unwrap()
        {
            Batch::Copied(n) => taken += n,
            other => panic!("{other:?}"),
        }
    }
    server.set_held(true);
    server.close();
    assert!(readable(fd, 0), "closed: the end is readable");
    server.set_held(false);
    assert!(readable(fd, 0), "and stays so");
}

#[cfg(target_os = "linux")]
#[test]
fn a_held_read_takes_what_came_in_order_and_leaves_the_end_to_the_next_receive() {
    let (_l, client, server) = blocking_pair("held-batch.sock");
    client.send_frame_blocking(b"warm").unwrap();
    assert!(client.wait_ack_blocking(Duration::from_secs(5)).unwrap());
    assert_eq!(next(&server), b"warm");
    let fd = server
        .held_by_loop(true)
        .expect("a Linux local socket can be held");
    let (mut buf, mut lens) = ([0u8; 64], [0usize; 8]);
    assert_eq!(
        server.read_held_batch(&mut buf, &mut lens),
        (false, Batch::TimedOut),
        "nothing came: nothing taken, still held"
    );
    let sent: Vec<Vec<u8>> = (0..3u8).map(|i| vec![b'a' + i; 2 + i as usize]).collect();
    for m in &sent {
        assert!(client.start_send(m).unwrap());
    }
    let mut got: Vec<Vec<u8>> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < sent.len() {
        assert!(Instant::now() < deadline, "only {got:?} within 10 s");
        assert!(readable(fd, 5000), "the held socket turns readable");
        let (let_go, batch) = server.read_held_batch(&mut buf, &mut lens);
        assert!(!let_go, "read by the loop, held on");
        if let Batch::Copied(n) = batch {
            let mut at = 0;
            for len in &lens[..n] {
                got.push(buf[at..at + len].to_vec());
                at += len;
            }
            server.set_held(false);
        }
    }
    assert_eq!(got, sent);
    for _ in &sent {
        assert!(
            client.wait_ack_blocking(Duration::from_secs(5)).unwrap(),
            "each acked when the loop read it"
        );
    }
    client.close();
    assert!(readable(fd, 5000), "the end is readable");
    let (let_go, batch) = server.read_held_batch(&mut buf, &mut lens);
    assert_eq!(
        (let_go, batch),
        (true, Batch::TimedOut),
        "the end: let go, take nothing"
    );
    let end = server.recv_batch_blocking(&mut buf, &mut lens, Some(Duration::from_secs(5)));
    assert!(end.is_err(), "the next receive reports the end: {end:?}");
}

/// `take_batch_now` says "nothing kept" only when what comes next makes the descriptor
/// readable or reports to the socket's poller: never while a message it read stays queued
/// or read ahead unreported (a local read of several frames queues the rest; a WebSocket
/// read keeps one read ahead for the reader task).
fn a_take_says_dry_only_when_what_is_left_will_be_heard_of(r: Resolution) {
    let (_l, client, server) = ipcez::runtime().block_on(pair(&r));
    client.send_frame_blocking(b"warm").unwrap();
    assert_eq!(next(&server), b"warm");
    let poller = Poller::new().unwrap();
    server.watch(&poller, 1);
    let fd = server
        .held_by_loop(true)
        .expect("a Linux socket can be held");
    let mut tokens = [0u64; 8];
    let (mut buf, mut lens) = ([0u8; 64], [0usize; 1]);
    poller.take(&mut tokens);
    assert_dry_soon(&server, &mut buf, &mut lens, "nothing came, nothing kept");
    let sent: Vec<Vec<u8>> = (0..3u8).map(|i| vec![b'a' + i; 2 + i as usize]).collect();
    for m in &sent {
        client.send_frame_blocking(m).unwrap();
    }
    // All three are in the server's socket buffer before it reads.
    std::thread::sleep(Duration::from_millis(100));
    let mut got: Vec<Vec<u8>> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < sent.len() {
        assert!(Instant::now() < deadline, "only {got:?} within 10 s");
        poller.take(&mut tokens); // only what is reported after the take counts
        // One message per take (`lens` holds one): the others stay with the library.
        let (batch, dry) = server.take_batch_now(&mut buf, &mut lens).unwrap();
        match batch {
            Batch::Copied(1) => got.push(buf[..lens[0]].to_vec()),
            _ => std::thread::sleep(Duration::from_millis(1)), // (the reader task may queue one)
        }
        if dry && got.len() < sent.len() {
            assert!(
                readable(fd, 0) || readable(poller.fileno(), 1000),
                "said dry with {} of {} taken, and neither the descriptor nor the poller \
                 tells of the rest",
                got.len(),
                sent.len()
            );
        }
    }
    assert_eq!(got, sent);
    assert_dry_soon(&server, &mut buf, &mut lens, "all taken: dry again");

    // A take of several holds them (the readiness stays up until they are handed on), so
    // a message queued meanwhile would report to nobody: such a take never says dry.
    let mut two = [0usize; 2];
    for m in [b"x", b"y"] {
        client.send_frame_blocking(m).unwrap();
    }
    // Past the 100 ms after which the library's own reader reads a socket left unread,
    // and queues both.
    std::thread::sleep(Duration::from_millis(300));
    match server.take_batch_now(&mut buf, &mut two).unwrap() {
        (Batch::Copied(2), dry) => assert!(!dry, "a take of two said dry while holding them"),
        other => panic!("both were not queued and taken together: {other:?}"),
    }
    server.set_held(false);
    assert_dry_soon(&server, &mut buf, &mut lens, "handed on: dry again");
}

/// Takes find nothing, and one says "dry" within 5 s: a take may say "not dry" while the
/// reader task holds the stream (it cannot tell then), but not for long.
fn assert_dry_soon(server: &Socket, buf: &mut [u8], lens: &mut [usize], what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (batch, dry) = server.take_batch_now(buf, lens).unwrap();
        assert_eq!(batch, Batch::TimedOut, "{what}: took something");
        if dry {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: never said dry within 5 s"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[cfg(target_os = "linux")]
#[test]
fn a_local_take_says_dry_only_when_the_rest_will_be_heard_of() {
    a_take_says_dry_only_when_what_is_left_will_be_heard_of(unix(&socket_path("take-dry.sock")));
}

#[cfg(target_os = "linux")]
#[test]
fn a_websocket_take_says_dry_only_when_the_rest_will_be_heard_of() {
    a_take_says_dry_only_when_what_is_left_will_be_heard_of(ws("ws://127.0.0.1:0/take-dry"));
}
