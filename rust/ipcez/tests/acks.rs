//! Acks between two ipcez endpoints are per connection and per message: a late ack never
//! acknowledges a later message, concurrent senders each get their own, and tokens in the
//! endpoint's shared semaphores (stale or forged) count for nothing.
#![cfg(target_os = "linux")]

mod common;

use std::time::Duration;

use common::{socket_path, unix, within};
use ipcez::{ConnectOptions, ListenOptions, Resolution, SocketError};

const SHORT: Duration = Duration::from_millis(300);

/// A listener whose connections queue at most `queued` messages (then stop reading), and a
/// client with a short ack timeout; plus `forged` tokens posted to the shared `data_acked`.
async fn setup(queued: usize, forged: usize) -> (ipcez::Listener, ipcez::Socket, ipcez::Socket) {
    let path = socket_path("acks.sock");
    let opts = ListenOptions {
        connection: ConnectOptions::default().queue_limits(queued, 1 << 20),
        ..Default::default()
    };
    let listener = opts.listen_on(&unix(&path)).await.unwrap();
    let addr = Resolution {
        address: listener.address().to_string(),
        ..unix(&path)
    };
    let client = ConnectOptions::default()
        .ack_timeout(SHORT)
        .connect_to(&addr)
        .await
        .unwrap();
    let server = listener.accept().await.unwrap();
    forge(&ipcez::unix_ack_names(&path).unwrap().1, forged);
    (listener, client, server)
}

fn forge(name: &str, n: usize) {
    let c = std::ffi::CString::new(name).unwrap();
    // SAFETY: a valid name; the semaphore exists (the listener made it), no O_CREAT.
    let sem = unsafe { libc::sem_open(c.as_ptr(), 0) };
    assert_ne!(sem, libc::SEM_FAILED);
    for _ in 0..n {
        // SAFETY: `sem` is open.
        unsafe { libc::sem_post(sem) };
    }
    // SAFETY: opened above, closed once.
    unsafe { libc::sem_close(sem) };
}

fn timed_out(r: Result<(), SocketError>) -> bool {
    match r {
        Err(SocketError::RecipientAckTimeout) => true,
        Ok(()) => false,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

#[tokio::test]
async fn a_late_ack_never_acknowledges_the_next_message() {
    within(30, async {
        let (_l, client, server) = setup(1, 1000).await;
        client.send_message(b"a").await.unwrap(); // read and queued: the queue is full
        assert!(
            timed_out(client.send_message(b"b").await),
            "b is not read yet"
        );
        assert_eq!(server.recv().await.unwrap(), b"a"); // room: b is read now, acked late
        tokio::time::sleep(Duration::from_millis(50)).await;
        // b's ack has come, but c is not read (b fills the queue): c must time out.
        assert!(timed_out(client.send_message(b"c").await));
        assert_eq!(server.recv().await.unwrap(), b"b");
        assert_eq!(server.recv().await.unwrap(), b"c");
        client.send_message(b"d").await.unwrap();
        assert_eq!(server.recv().await.unwrap(), b"d");
    })
    .await;
}

#[tokio::test]
async fn concurrent_senders_get_exactly_the_acks_of_what_was_read() {
    within(30, async {
        let (_l, client, server) = setup(4, 1000).await;
        // 100 KiB each: no single read can complete two of them, so the reader stops after
        // exactly four (its queue's bound).
        let sends = (0..10u8).map(|i| {
            let c = client.clone();
            tokio::spawn(async move { c.send_message(&vec![i; 100 * 1024]).await })
        });
        // Not acked: a timeout, or a frame that could not even be written whole in time
        // (the connection then ends, as a half-written frame must).
        let mut acked = 0;
        for s in sends {
            acked += usize::from(s.await.unwrap().is_ok());
        }
        assert_eq!(acked, 4);
        for _ in 0..4 {
            assert_eq!(server.recv().await.unwrap().len(), 100 * 1024);
        }
    })
    .await;
}

#[test]
fn blocking_sends_on_several_threads_each_wait_for_their_own_frame() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (_l, client, server) = rt.block_on(setup(1000, 1000));
    std::thread::scope(|s| {
        for t in 0..4u8 {
            let c = client.clone();
            s.spawn(move || {
                for i in 0..200u8 {
                    c.send_frame_blocking(&[t, i]).unwrap();
                    assert!(c.wait_ack_blocking(Duration::from_secs(5)).unwrap());
                }
            });
        }
    });
    let mut got = 0;
    while server
        .recv_blocking(Some(Duration::ZERO))
        .unwrap()
        .is_some()
    {
        got += 1;
    }
    assert_eq!(got, 800);
}

/// A client with a long ack timeout, to a listener whose connections queue one message.
fn slow_reader_pair(name: &str) -> (ipcez::Listener, ipcez::Socket, ipcez::Socket) {
    ipcez::runtime().block_on(async {
        let path = socket_path(name);
        let opts = ListenOptions {
            connection: ConnectOptions::default().queue_limits(1, 1 << 20),
            ..Default::default()
        };
        let listener = opts.listen_on(&unix(&path)).await.unwrap();
        let addr = Resolution {
            address: listener.address().to_string(),
            ..unix(&path)
        };
        let client = ConnectOptions::default()
            .ack_timeout(Duration::from_secs(20))
            .connect_to(&addr)
            .await
            .unwrap();
        let server = listener.accept().await.unwrap();
        (listener, client, server)
    })
}

#[test]
fn sends_that_never_wait_and_blocking_sends_are_acked_only_once_read() {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    const EACH: u8 = 30;
    const SIZE: usize = 100 * 1024; // no single read completes two of them
    let (_l, client, server) = slow_reader_pair("interleaved.sock");
    // The peer's reader stops once one message waits in its queue, so at any moment it has
    // read at most `taken + 1` frames (`taken`: takes started): an ack of the frame at place
    // p needs p <= taken + 1.
    let taken = AtomicUsize::new(0);
    let acked: Mutex<Vec<([u8; 2], usize)>> = Mutex::new(Vec::new());
    let msg = |t: u8, i: u8| {
        let mut m = vec![0; SIZE];
        m[..2].copy_from_slice(&[t, i]);
        m
    };
    let order = std::thread::scope(|s| {
        let note = |id: [u8; 2]| {
            let now = taken.load(Ordering::SeqCst);
            acked.lock().unwrap().push((id, now));
        };
        let c = client.clone();
        s.spawn(move || {
            // Three at a time without waiting (they queue behind the blocking sender's
            // frames), then the wait for each one's own ack.
            for round in 0..EACH / 3 {
                let marks: Vec<_> = (0..3)
                    .map(|k| {
                        let i = round * 3 + k;
                        assert!(c.start_send(&msg(0, i)).unwrap());
                        ([0, i], c.sent_mark())
                    })
                    .collect();
                for (id, mark) in marks {
                    assert!(
                        c.wait_ack_of_blocking(mark, Duration::from_secs(20))
                            .unwrap()
                    );
                    note(id);
                }
            }
        });
        let c = client.clone();
        s.spawn(move || {
            for i in 0..EACH {
                c.send_frame_blocking(&msg(1, i)).unwrap();
                assert!(c.wait_ack_blocking(Duration::from_secs(20)).unwrap());
                note([1, i]);
            }
        });
        let mut order = Vec::new();
        while order.len() < 2 * usize::from(EACH) {
            std::thread::sleep(Duration::from_millis(3));
            // Counted before the take: the take may read the next frame itself.
            taken.fetch_add(1, Ordering::SeqCst);
            let m = server.recv_blocking(Some(Duration::from_secs(20))).unwrap();
            let m = m.expect("a message within 20 s");
            order.push([m[0], m[1]]);
        }
        order
    });
    let acked = acked.into_inner().unwrap();
    assert_eq!(acked.len(), 2 * usize::from(EACH));
    for (id, taken_then) in acked {
        let place = 1 + order.iter().position(|&o| o == id).unwrap();
        assert!(
            place <= taken_then + 1,
            "{id:?} (read {place}th) was acked when only {taken_then} had been taken"
        );
    }
}
