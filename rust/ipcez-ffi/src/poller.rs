//! `ipcez_poller`: one descriptor through which an event loop learns which of its many
//! sockets and listeners have something waiting.

use ipcez::Poller;

use crate::boundary::{Castable, call, call_or, free, into_handle, try_borrow, write_out};
use crate::error::{FfiError, ipcez_error, ipcez_result};
use crate::listener::{ipcez_listener, listener_ref};
use crate::message::ipcez_message;
use crate::recv_batch::{batch_slices, hand_batch};
use crate::socket::{ipcez_socket, socket_ref};

/// A poller: a list of tokens of sources that have something waiting, and a descriptor
/// that is readable while the list is not empty.
#[allow(non_camel_case_types)]
pub struct ipcez_poller {
    _private: [u8; 0],
}

impl Castable for ipcez_poller {
    type Rust = Poller;
}

fn poller_ref<'a>(p: *const ipcez_poller) -> Result<&'a Poller, FfiError> {
    // SAFETY: every export's `# Safety` section makes `p` NULL or a live poller.
    unsafe { try_borrow(p, "poller") }
}

/// Makes a poller. Unix only (an error elsewhere).
///
/// # Safety
/// `out_poller` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_poller_new(
    out_poller: *mut *mut ipcez_poller,
    out_err: *mut *mut ipcez_error,
) -> ipcez_result {
    call(out_err, || {
        let poller = Poller::new().map_err(|e| FfiError::from(ipcez::SocketError::Io(e)))?;
        unsafe { write_out(out_poller, into_handle::<ipcez_poller>(poller)) };
        Ok(ipcez_result::Ok)
    })
}

/// The poller's descriptor, readable while tokens wait to be taken; -1 for NULL (and
/// where there are no descriptors). Owned by the poller: do not read or close it.
///
/// # Safety
/// `p` is NULL or a live poller.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_poller_fileno(p: *const ipcez_poller) -> i32 {
    call_or(-1, || {
        #[cfg(unix)]
        return poller_ref(p).map_or(-1, |p| p.fileno());
        #[cfg(not(unix))]
        return poller_ref(p).map_or(-1, |_| -1);
    })
}

/// Moves up to `cap` tokens, oldest first, into `out` and returns how many. A token says
/// its source went from nothing waiting to something waiting (or ended): take from that
/// source with a zero timeout until it has nothing, since it reports again only after that.
///
/// # Safety
/// `p` is NULL or a live poller; `out` is valid for writes of `cap` elements.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_poller_take(
    p: *const ipcez_poller,
    out: *mut u64,
    cap: usize,
) -> usize {
    call_or(0, || {
        let Ok(p) = poller_ref(p) else { return 0 };
        if out.is_null() || cap == 0 {
            return 0;
        }
        // SAFETY: per the # Safety section, `out` holds `cap` elements.
        p.take(unsafe { std::slice::from_raw_parts_mut(out, cap) })
    })
}

/// Frees a poller. Sockets and listeners that report to it keep what they need, so this
/// may come before or after them. NULL is fine; must not be called twice.
///
/// # Safety
/// `p` is NULL or a poller not yet freed, used by no other thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_poller_free(p: *mut ipcez_poller) {
    call_or((), || unsafe { free(p) })
}

/// From now on the socket reports `token` to `p` whenever a message comes to wait where
/// none waited, or the connection ends (and at once if a message already waits).
/// Replaces an earlier poller.
///
/// # Safety
/// `s` and `p` are NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_socket_watch(
    s: *const ipcez_socket,
    p: *const ipcez_poller,
    token: u64,
    out_err: *mut *mut ipcez_error,
) -> ipcez_result {
    call(out_err, || {
        let (s, p) = (socket_ref(s)?, poller_ref(p)?);
        s.socket.watch(p, token);
        s.acks.report_to(p, token);
        Ok(ipcez_result::Ok)
    })
}

/// Expects `count` more acks for frames this socket wrote (`ipcez_socket_start_send`,
/// `ipcez_socket_start_send_many`), each within the socket's ack timeout. The library
/// waits for them on a few threads of its own and reports progress to the socket's poller
/// (`ipcez_socket_watch` first); take it with `ipcez_socket_take_acks`. Between two ipcez
/// endpoints on Linux the peer is asked to ring a doorbell on the socket with its acks: a
/// loop that holds the socket (`ipcez_socket_hold_read`) hears of them there
/// (`ipcez_socket_read_held`), and the threads only step in after 20 ms. Call it right after
/// the send, on the same thread, before sending again: each ack is then awaited for its own
/// message (or a later one, never an earlier one).
///
/// # Safety
/// `s` is NULL or a live socket.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_socket_expect_acks(
    s: *const ipcez_socket,
    count: usize,
    out_err: *mut *mut ipcez_error,
) -> ipcez_result {
    call(out_err, || {
        let s = socket_ref(s)?;
        s.acks
            .expect(&s.socket, count)
            .map_err(FfiError::invalid_input)?;
        Ok(ipcez_result::Ok)
    })
}

/// `ipcez_socket_start_send` followed, when the message was handed over on a local
/// socket, by `ipcez_socket_expect_acks` for its one ack: the send of an event loop in one
/// call. Results as `ipcez_socket_start_send`; a WebSocket message expects no ack. On a
/// local socket not watched by a poller yet (`ipcez_socket_watch`) it fails with nothing
/// sent.
///
/// # Safety
/// `s` is NULL or a live socket; `data` is valid for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_socket_start_send_acked(
    s: *const ipcez_socket,
    data: *const u8,
    len: usize,
    out_err: *mut *mut ipcez_error,
) -> ipcez_result {
    call(out_err, || {
        let s = socket_ref(s)?;
        let data = unsafe { crate::boundary::bytes(data, len) }?;
        let acked = s.socket.transport() != ipcez::Transport::WebSocket;
        if acked && !s.acks.has_poller() {
            // Refused before anything is sent: a caller may send it again.
            return Err(FfiError::invalid_input(
                "watch the socket with a poller (ipcez_socket_watch) before sending with \
                 ipcez_socket_start_send_acked"
                    .into(),
            ));
        }
        if !s.socket.start_send(data)? {
            return Ok(ipcez_result::Timeout);
        }
        if acked {
            s.acks
                .expect(&s.socket, 1)
                .map_err(FfiError::invalid_input)?;
        }
        Ok(ipcez_result::Ok)
    })
}

/// With `on` nonzero, an event loop is about to wait for this socket's next message and
/// reads the socket itself meanwhile: `*out_fd` is the descriptor to watch for
/// readability, after which `ipcez_socket_recv_batch` (or `ipcez_socket_recv`) with
/// `timeout_ms` 0 takes what came; the library's own reader stands aside, so a message
/// wakes only the loop's thread. Call it again with `on` 0 once the loop stops watching
/// (the library's reader then reads and acks what comes). Stop watching before you close
/// the socket: the descriptor is the socket's own. `*out_fd` is -1 when the socket cannot
/// be read so (not on Linux, not read in the background yet, or closed): wait for the
/// poller as usual.
///
/// While acks are expected (`ipcez_socket_expect_acks`), look at them with
/// `ipcez_socket_take_acks` after every read of the held socket, receives included: the
/// doorbell, or a frame that stands for it, may come with what was read.
///
/// While it is on, what comes is read and acked when the loop reads. The library's reader
/// reads after all when the socket, held for 100 ms, is found readable and unread (the
/// loop is blocked: acks wait at most about 150 ms), when the thread that holds it blocks
/// in a receive or a send of this library, and once the socket is closed.
///
/// # Safety
/// `s` is NULL or a live socket; `out_fd` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_socket_hold_read(
    s: *const ipcez_socket,
    on: i32,
    out_fd: *mut i32,
    out_err: *mut *mut ipcez_error,
) -> ipcez_result {
    call(out_err, || {
        let sock = &socket_ref(s)?.socket;
        #[cfg(unix)]
        let fd = sock.held_by_loop(on != 0).unwrap_or(-1);
        #[cfg(not(unix))]
        let fd = {
            let _ = (sock, on);
            -1
        };
        unsafe { write_out(out_fd, fd) };
        Ok(ipcez_result::Ok)
    })
}

/// An event loop that holds this socket (`ipcez_socket_hold_read`) found its descriptor
/// readable while no receive waits (it waits for acks): reads what came without taking a
/// message. Messages are queued (and acked) as usual but not reported to the poller: take
/// them (a receive with `timeout_ms` 0) before waiting for a report. Doorbells, which tell
/// of acks, are heard: take the acks with `ipcez_socket_take_acks` next. `*out_let_go` is 1 when the
/// loop should stop watching and call `ipcez_socket_hold_read` with `on` 0 instead (the
/// socket is no longer held, its queue is full, or it cannot be read so): the library's
/// reader takes over.
///
/// # Safety
/// `s` is NULL or a live socket; `out_let_go` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_socket_read_held(
    s: *const ipcez_socket,
    out_let_go: *mut i32,
    out_err: *mut *mut ipcez_error,
) -> ipcez_result {
    call(out_err, || {
        let s = socket_ref(s)?;
        let let_go = s.socket.read_held();
        if let_go {
            s.acks.hurry(&s.socket);
        }
        unsafe { write_out(out_let_go, i32::from(let_go)) };
        Ok(ipcez_result::Ok)
    })
}

/// `ipcez_socket_read_held` followed by `ipcez_socket_take_acks`: what an event loop does
/// when a socket it holds for acks turns readable, in one call. Fails like
/// `ipcez_socket_take_acks`.
///
/// # Safety
/// `s` is NULL or a live socket; the out-pointers are valid for writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_socket_read_held_acks(
    s: *const ipcez_socket,
    out_let_go: *mut i32,
    out_acked: *mut usize,
    out_timed_out: *mut usize,
    out_err: *mut *mut ipcez_error,
) -> ipcez_result {
    unsafe {
        match ipcez_socket_read_held(s, out_let_go, out_err) {
            ipcez_result::Ok => ipcez_socket_take_acks(s, out_acked, out_timed_out, out_err),
            other => other,
        }
    }
}

/// `ipcez_socket_read_held_acks`, then the first messages queued (those just read and any
/// before them), taken without reading again as `ipcez_socket_recv_batch` takes them
/// (`IPCEZ_RESULT_TIMEOUT`: none is queued; the acks and `*out_let_go` are written either
/// way): what an event loop does when a socket it holds turns readable while its sends
/// await acks, in one call, so that the message that came with the acks (as a rule the
/// answer) needs no call of its own. Fails like `ipcez_socket_take_acks`, and only when no
/// message was taken: with a message, an end found among the acks comes with the next
/// call. The end of the connection itself is left for the next receive.
///
/// # Safety
/// As `ipcez_socket_recv_batch`; `out_let_go`, `out_acked` and `out_timed_out` are valid
/// for writes.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn ipcez_socket_read_held_batch(
    s: *const ipcez_socket,
    buf: *mut u8,
    cap: usize,
    lens: *mut usize,
    max_count: usize,
    out_let_go: *mut i32,
    out_acked: *mut usize,
    out_timed_out: *mut usize,
    out_count: *mut usize,
    out_msg: *mut *mut ipcez_message,
    out_data: *mut *const u8,
    out_len: *mut usize,
    out_err: *mut *mut ipcez_error,
) -> ipcez_result {
    call(out_err, || {
        let s = socket_ref(s)?;
        // SAFETY: per the # Safety section.
        let (buf, lens) = unsafe { batch_slices(buf, cap, lens, max_count) }?;
        let (let_go, batch) = s.socket.read_held_batch(buf, lens);
        if let_go {
            s.acks.hurry(&s.socket);
        }
        let got = batch != ipcez::Batch::TimedOut;
        let progress = s.acks.take(&s.socket, got);
        if let Some(e) = progress.ended {
            return Err(e.into());
        }
        unsafe {
            write_out(out_let_go, i32::from(let_go));
            write_out(out_acked, progress.acked);
            write_out(out_timed_out, progress.timed_out);
            Ok(hand_batch(batch, out_count, out_msg, out_data, out_len))
        }
    })
}

/// `ipcez_socket_recv_batch` with `timeout_ms` 0, for an event loop that holds this socket
/// (`ipcez_socket_hold_read`), which also says whether the library keeps anything more
/// for it: `*out_dry` is 1 when it does not, so that until the descriptor turns readable or
/// the socket reports to its poller another take would find nothing (the loop may wait
/// without looking first); 0 when it may (more messages are queued, one was read ahead,
/// the connection ended, another thread reads, or this take copied more than one message:
/// the socket reports nothing more until `ipcez_socket_set_held` lets go of them).
/// Written whatever the result.
///
/// # Safety
/// As `ipcez_socket_recv_batch`; `out_dry` is valid for a write.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn ipcez_socket_take_batch(
    s: *const ipcez_socket,
    buf: *mut u8,
    cap: usize,
    lens: *mut usize,
    max_count: usize,
    out_dry: *mut i32,
    out_count: *mut usize,
    out_msg: *mut *mut ipcez_message,
    out_data: *mut *const u8,
    out_len: *mut usize,
    out_err: *mut *mut ipcez_error,
) -> ipcez_result {
    unsafe { write_out(out_dry, 0) };
    call(out_err, || {
        let s = socket_ref(s)?;
        // SAFETY: per the # Safety section.
        let (buf, lens) = unsafe { batch_slices(buf, cap, lens, max_count) }?;
        let (batch, dry) = s.socket.take_batch_now(buf, lens)?;
        unsafe {
            write_out(out_dry, i32::from(dry));
            Ok(hand_batch(batch, out_count, out_msg, out_data, out_len))
        }
    })
}

/// Call once at the end of each turn of an event loop in which it read sockets it holds
/// (`ipcez_socket_read_held`, its variants, or a receive on the loop's thread), once the
/// tasks those messages woke have run (asyncio: `loop.call_soon`): one call for all of the
/// loop's sockets, in place of `ipcez_socket_ring_deferred_doorbell` per socket. The
/// loop's next read of a held socket rings its doorbell at once again (unless the turn
/// that ended read several: a loop under load leaves every doorbell to its answers), and a
/// doorbell deferred in a busy turn (every read after the turn's first) is rung by the end
/// of the next turn if no frame written on its socket carried it. Returns how many doorbells are
/// still deferred: call it again at the end of the next turn while that is not 0. Only a
/// thread that calls this (or the per-socket call) defers doorbells at all. Returns 0 and
/// does nothing outside Linux.
#[unsafe(no_mangle)]
pub extern "C" fn ipcez_loop_turn_ends() -> usize {
    call_or(0, ipcez::loop_turn_ends)
}

/// Call at the end of each turn of an event loop in which it read a socket it holds
/// (`ipcez_socket_read_held`, or a receive on the loop's thread), once the tasks those
/// messages woke have run (asyncio: `loop.call_soon`), for each such socket. Once a thread
/// has called it, its loop may leave the doorbells of a busy turn (every read after the
/// turn's first) to the next frame written on the socket: an answer usually follows at
/// once, and its frame wakes the peer as a doorbell would. This rings the doorbell if no
/// frame went out. Cheap when nothing is deferred; does nothing on a WebSocket, or on NULL
/// or a socket made before `fork()`. A thread that never calls it rings every doorbell at
/// once.
///
/// # Safety
/// `s` is NULL or a live socket.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_socket_ring_deferred_doorbell(s: *const ipcez_socket) {
    call_or((), || {
        if let Ok(s) = socket_ref(s) {
            s.socket.ring_deferred_doorbell();
        }
    })
}

/// The progress of the expected acks since the last call, oldest first: `*out_acked` came,
/// then `*out_timed_out` ran out of time (each such send failed with an ack timeout).
/// Once every expected ack is accounted for and the connection ended meanwhile, the error
/// that ended it (the acks still expected then will not come).
///
/// # Safety
/// `s` is NULL or a live socket; the out-pointers are valid for writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_socket_take_acks(
    s: *const ipcez_socket,
    out_acked: *mut usize,
    out_timed_out: *mut usize,
    out_err: *mut *mut ipcez_error,
) -> ipcez_result {
    call(out_err, || {
        let s = socket_ref(s)?;
        let progress = s.acks.take(&s.socket, false);
        if let Some(e) = progress.ended {
            return Err(e.into());
        }
        unsafe {
            write_out(out_acked, progress.acked);
            write_out(out_timed_out, progress.timed_out);
        }
        Ok(ipcez_result::Ok)
    })
}

/// Like `ipcez_socket_watch` for a listener: reports when a connection comes to wait
/// where none waited, or the listener closes.
///
/// # Safety
/// `l` and `p` are NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_listener_watch(
    l: *const ipcez_listener,
    p: *const ipcez_poller,
    token: u64,
    out_err: *mut *mut ipcez_error,
) -> ipcez_result {
    call(out_err, || {
        listener_ref(l)?.watch(poller_ref(p)?, token);
        Ok(ipcez_result::Ok)
    })
}
