//! Writes that can carry descriptors (`SCM_RIGHTS`), and the read that takes them on the
//! other side (Linux), so that the private ack channel rides with a connection's first frame.

use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
#[cfg(target_os = "linux")]
use std::os::fd::{FromRawFd, OwnedFd};

#[cfg(target_os = "linux")]
use bytes::BufMut;

/// Room for this many descriptors in one read: more than an honest peer ever sends (two),
/// so extra ones arrive (and are closed) instead of being cut off silently.
const MAX_FDS: usize = 4;

/// `sendmsg` of `bufs`, with `fds` attached as `SCM_RIGHTS` (none: a plain send).
/// MSG_NOSIGNAL: a dead peer gives EPIPE, not a SIGPIPE that kills a host process that does
/// not ignore it.
pub(crate) fn send(sock: RawFd, bufs: &[IoSlice<'_>], fds: &[BorrowedFd<'_>]) -> io::Result<usize> {
    const SPACE: usize = cmsg_space(MAX_FDS + 1);
    assert!(
        fds.len() <= MAX_FDS + 1,
        "at most {} descriptors",
        MAX_FDS + 1
    );
    let mut control = [0u64; SPACE.div_ceil(8)];
    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = bufs.len() as _;
    if !fds.is_empty() {
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = cmsg_space(fds.len()) as _;
        // SAFETY: the control buffer has room for one cmsghdr with `fds.len()` ints
        // (CMSG_SPACE), so CMSG_FIRSTHDR is non-null and the data fits inside the buffer.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len =
                libc::CMSG_LEN((fds.len() * std::mem::size_of::<RawFd>()) as u32) as _;
            let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
            for (i, fd) in fds.iter().enumerate() {
                std::ptr::write_unaligned(data.add(i), fd.as_raw_fd());
            }
        }
    }
    // SAFETY: IoSlice is ABI-compatible with iovec on Unix; the slices and the control
    // buffer outlive the call.
    let n = unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

const fn cmsg_space(fds: usize) -> usize {
    // CMSG_SPACE is not const in libc; this is its definition on Linux (8-byte alignment).
    let header = std::mem::size_of::<libc::cmsghdr>();
    let data = fds * std::mem::size_of::<RawFd>();
    header + data.div_ceil(8) * 8
}

#[cfg(target_os = "linux")]
/// `recvmsg` into `buf`, also taking descriptors the peer attached: the bytes read and the
/// descriptors, now open here (close-on-exec). If the kernel had to cut the list
/// (MSG_CTRUNC) none is returned: those that came are closed, and the kernel closed the rest.
pub(crate) fn recv<B: BufMut>(sock: RawFd, buf: &mut B) -> io::Result<(usize, Vec<OwnedFd>)> {
    const SPACE: usize = cmsg_space(MAX_FDS);
    let mut control = [0u64; SPACE.div_ceil(8)];
    if !buf.has_remaining_mut() {
        return Ok((0, Vec::new()));
    }
    let chunk = buf.chunk_mut();
    let mut iov = libc::iovec {
        iov_base: chunk.as_mut_ptr().cast(),
        iov_len: chunk.len(),
    };
    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = SPACE as _;
    // SAFETY: the iovec points to `chunk.len()` writable bytes and the control buffer to
    // SPACE bytes, both alive for the call. MSG_CMSG_CLOEXEC: no child inherits a received fd.
    let n = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: recvmsg initialized the first `n` bytes of the chunk.
    unsafe { buf.advance_mut(n as usize) };
    let mut received = Vec::new();
    // SAFETY: the CMSG_* walk stays inside the control buffer the kernel filled in
    // (msg_controllen was updated by recvmsg); every SCM_RIGHTS entry holds whole ints,
    // each a descriptor now open in this process, which we take ownership of exactly once.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg);
                let len = (*cmsg).cmsg_len as usize - (data as usize - cmsg as usize);
                for i in 0..len / std::mem::size_of::<RawFd>() {
                    let fd = std::ptr::read_unaligned(data.cast::<RawFd>().add(i));
                    received.push(OwnedFd::from_raw_fd(fd));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        received.clear();
    }
    Ok((n as usize, received))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use crate::os::unix::private_ack::{PeerAcks, channel};
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    fn pair() -> (UnixStream, UnixStream) {
        UnixStream::pair().unwrap()
    }

    fn recv_all(b: &UnixStream) -> (Vec<u8>, Vec<OwnedFd>) {
        let mut buf = Vec::with_capacity(64);
        let (_, fds) = recv(b.as_raw_fd(), &mut buf).unwrap();
        (buf, fds)
    }

    #[test]
    fn the_channel_rides_with_the_first_bytes_and_acks_arrive() {
        let (a, b) = pair();
        let (own, to_send) = channel().unwrap();
        let sent = send(a.as_raw_fd(), &[IoSlice::new(b"hello")], &to_send.fds());
        assert_eq!(sent.unwrap(), 5);
        drop(to_send);
        assert!(
            !own.peer_dropped().unwrap(),
            "the copy in flight keeps it open"
        );
        let (bytes, fds) = recv_all(&b);
        assert_eq!(bytes, b"hello");
        let mut acks = PeerAcks::accept(fds).expect("an ipcez channel");
        assert!(!own.peer_dropped().unwrap(), "held until the first ack");
        acks.ack(3);
        acks.ack(1);
        assert_eq!(own.take_acks().unwrap(), 4);
        assert_eq!(own.take_acks().unwrap(), 0);
        assert!(own.peer_dropped().unwrap(), "let go after the first ack");
        acks.ack(2);
        assert_eq!(own.take_acks().unwrap(), 2);
    }

    #[test]
    fn a_plain_reader_drops_the_channel_and_its_end_of_file_shows() {
        let (a, mut b) = pair();
        let (own, to_send) = channel().unwrap();
        send(a.as_raw_fd(), &[IoSlice::new(b"hi")], &to_send.fds()).unwrap();
        drop(to_send);
        let mut buf = [0u8; 8];
        assert_eq!(std::io::Read::read(&mut b, &mut buf).unwrap(), 2);
        assert!(own.peer_dropped().unwrap());
    }

    #[test]
    fn anything_but_the_two_ends_of_a_channel_is_closed_and_refused() {
        let (a, b) = pair();
        let (spare, _keep) = pair();
        let (own, to_send) = channel().unwrap();
        let (own2, to_send2) = channel().unwrap();
        let [mem, w] = to_send.fds();
        let [_, w2] = to_send2.fds();
        // A page the peer could still shrink under our mapping (SIGBUS).
        // SAFETY: memfd_create with a valid name; ftruncate on the new descriptor.
        let loose = unsafe {
            let fd = libc::syscall(libc::SYS_memfd_create, c"loose".as_ptr(), libc::MFD_CLOEXEC);
            assert!(fd >= 0);
            let fd = OwnedFd::from_raw_fd(fd as libc::c_int);
            assert_eq!(libc::ftruncate(fd.as_raw_fd(), 4096), 0);
            fd
        };
        let cases: Vec<Vec<BorrowedFd<'_>>> = vec![
            vec![mem],                // one alone
            vec![w, mem],             // swapped
            vec![spare.as_fd(), w],   // a socket for the page
            vec![mem, spare.as_fd()], // a socket for the pipe
            vec![loose.as_fd(), w],   // a page that can shrink
            vec![mem, w, w2],         // one too many
        ];
        for fds in cases {
            send(a.as_raw_fd(), &[IoSlice::new(b"x")], &fds).unwrap();
            let (bytes, fds) = recv_all(&b);
            assert_eq!(bytes, b"x");
            assert!(PeerAcks::accept(fds).is_none());
        }
        drop((to_send, to_send2));
        assert!(own.peer_dropped().unwrap(), "every refused copy was closed");
        assert!(own2.peer_dropped().unwrap());
        // More than the buffer holds: the kernel cuts the list, and nothing is kept.
        let chans: Vec<_> = (0..MAX_FDS + 1).map(|_| channel().unwrap()).collect();
        let ws: Vec<_> = chans.iter().map(|(_, t)| t.fds()[1]).collect();
        send(a.as_raw_fd(), &[IoSlice::new(b"z")], &ws).unwrap();
        let (owns, sends): (Vec<_>, Vec<_>) = chans.into_iter().unzip();
        drop(sends);
        let (bytes, fds) = recv_all(&b);
        assert_eq!(bytes, b"z");
        assert!(fds.is_empty());
        assert!(owns.iter().all(|o| o.peer_dropped().unwrap()));
    }
}
