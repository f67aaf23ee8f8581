//! The local wire format: a 4-byte big-endian length, then exactly that many bytes.

use std::io;

use crate::error::MessageTooLarge;

/// The largest message ipcez sends or accepts: 4 MiB.
pub const MAX_MESSAGE_LEN: usize = 4 * 1024 * 1024;

/// Refuses a message over the limit with the `Io(InvalidInput)` error the API promises.
pub(crate) fn check_len(len: usize) -> io::Result<()> {
    if len > MAX_MESSAGE_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            MessageTooLarge { len },
        ));
    }
    Ok(())
}

/// The 4-byte header for a message of `len` bytes (already checked against the limit).
pub(crate) fn header(len: usize) -> [u8; 4] {
    (len as u32).to_be_bytes()
}

/// What a decoder makes of a header word over the size limit. Only between two ipcez
/// endpoints are some of them records: ack records on a named pipe (see
/// `local::acks::inband`), doorbells on a Unix socket (`local::doorbell`, the same shape,
/// whose count means nothing). Everywhere else, and with a custom peer, they are protocol
/// violations.
#[cfg_attr(not(any(windows, target_os = "linux")), allow(dead_code))] // records: pipes, doorbells
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Control {
    #[default]
    Off,
    /// The first word may be the hello (a listener's end); ack records follow it.
    #[cfg_attr(not(windows), allow(dead_code))] // a named pipe's only
    First,
    /// Ack records may come between frames.
    On,
}

#[cfg_attr(not(windows), allow(dead_code))] // records exist on named pipes only
/// The hello an ipcez client writes first on a named pipe whose listener is ipcez.
pub(crate) const HELLO: [u8; 4] = [0xFF; 4];

/// An ack record: the top bits `10`, then how many messages were read whole.
const ACK_TAG: u32 = 0x8000_0000;
const TAG_BITS: u32 = 0xC000_0000;

#[cfg_attr(not(any(windows, target_os = "linux")), allow(dead_code))]
/// The largest count one ack record carries.
pub(crate) const MAX_ACK_RECORD: u32 = !TAG_BITS;

#[cfg_attr(not(any(windows, target_os = "linux")), allow(dead_code))]
/// The ack record for `n` messages (at most [`MAX_ACK_RECORD`]).
pub(crate) fn ack_record(n: u32) -> [u8; 4] {
    (ACK_TAG | n.min(MAX_ACK_RECORD)).to_be_bytes()
}

/// How much of an announced body is allocated before its bytes arrive, so that a peer
/// announcing 4 MiB and sending nothing costs us little.
const INITIAL_BODY_CAPACITY: usize = 256 * 1024;

/// Incremental frame decoder: feed it bytes as they arrive, get whole messages out.
///
/// A header alone makes it allocate at most `INITIAL_BODY_CAPACITY` (256 KiB); after that it
/// grows with what arrives, at most 1 MiB ahead of the bytes received. A large body may
/// instead take a spare buffer that earlier messages gave back (memory already held, see
/// `buffers`). An announced length over [`MAX_MESSAGE_LEN`] is an `InvalidData` error
/// before any allocation.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    header: [u8; 4],
    header_len: usize,
    body: Option<Body>,
    control: Control,
    /// Acks counted from records since the last `take_acks`.
    acks: Option<u64>,
}

#[derive(Debug)]
struct Body {
    data: Vec<u8>,
    len: usize,
}

impl FrameDecoder {
    /// A decoder waiting for the first header.
    pub fn new() -> Self {
        Self::default()
    }

    /// True when no partial frame is buffered (a clean place for the stream to end).
    pub fn is_idle(&self) -> bool {
        self.header_len == 0 && self.body.is_none()
    }

    /// Consumes bytes from the front of `input` and returns how many it used and the
    /// message it completed, if any. Call again with the rest until `input` is used up.
    pub fn feed(&mut self, input: &[u8]) -> io::Result<(usize, Option<Vec<u8>>)> {
        let mut used = 0;
        if self.body.is_none() {
            let take = (4 - self.header_len).min(input.len());
            self.header[self.header_len..self.header_len + take].copy_from_slice(&input[..take]);
            self.header_len += take;
            used += take;
            if self.header_len < 4 {
                return Ok((used, None));
            }
            let word = u32::from_be_bytes(self.header);
            if self.control_record(word) {
                self.header_len = 0;
                return Ok((used, None));
            }
            let len = word as usize;
            if len > MAX_MESSAGE_LEN {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "protocol violation: the peer announced a message of {len} bytes, more \
                         than the 4 MiB limit ({MAX_MESSAGE_LEN} bytes); closing the connection"
                    ),
                ));
            }
            self.body = Some(Body {
                data: crate::buffers::take(len, len.min(INITIAL_BODY_CAPACITY)),
                len,
            });
        }
        let body = self.body.as_mut().expect("body state was just set");
        let take = (body.len - body.data.len()).min(input.len() - used);
        body.data.extend_from_slice(&input[used..used + take]);
        used += take;
        Ok((used, self.finish_if_complete()))
    }

    #[cfg_attr(not(any(windows, target_os = "linux")), allow(dead_code))]
    /// Sets how header words over the size limit are read (see [`Control`]).
    pub(crate) fn set_control(&mut self, control: Control) {
        self.control = control;
    }

    #[cfg_attr(not(any(windows, target_os = "linux")), allow(dead_code))]
    /// The acks counted from ack records since the last call; `Some(0)` when only records
    /// of no ack came (the answer to a hello).
    pub(crate) fn take_acks(&mut self) -> Option<u64> {
        self.acks.take()
    }

    /// True when `word` was a record, taken in.
    fn control_record(&mut self, word: u32) -> bool {
        match self.control {
            Control::Off => false,
            Control::First => {
                let hello = word == u32::from_be_bytes(HELLO);
                self.control = if hello { Control::On } else { Control::Off };
                hello
            }
            Control::On if word & TAG_BITS == ACK_TAG => {
                *self.acks.get_or_insert(0) += u64::from(word & MAX_ACK_RECORD);
                true
            }
            Control::On => false,
        }
    }

    /// When a large body is in progress, the buffer to read its next bytes into directly
    /// (saving a copy), with how many bytes are still missing.
    pub fn direct_target(&mut self) -> Option<(&mut Vec<u8>, usize)> {
        let body = self.body.as_mut()?;
        let missing = body.len - body.data.len();
        (missing >= 64 * 1024).then(|| {
            // Grow with what arrives, at most a megabyte ahead.
            body.data.reserve(missing.min(1024 * 1024));
            (&mut body.data, missing)
        })
    }

    /// After bytes were read into [`direct_target`](Self::direct_target): the message, if
    /// that completed it.
    pub fn finish_if_complete(&mut self) -> Option<Vec<u8>> {
        let body = self.body.as_ref()?;
        if body.data.len() < body.len {
            return None;
        }
        self.header_len = 0;
        self.body.take().map(|b| b.data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(msg: &[u8]) -> Vec<u8> {
        let mut v = header(msg.len()).to_vec();
        v.extend_from_slice(msg);
        v
    }

    fn decode_all(dec: &mut FrameDecoder, mut input: &[u8]) -> io::Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        while !input.is_empty() {
            let (used, msg) = dec.feed(input)?;
            out.extend(msg);
            input = &input[used..];
        }
        Ok(out)
    }

    #[test]
    fn decodes_frames_split_anywhere() {
        let msgs: Vec<Vec<u8>> = vec![vec![], b"a".to_vec(), vec![7; 70_000], b"end".to_vec()];
        let stream: Vec<u8> = msgs.iter().flat_map(|m| frame(m)).collect();
        for chunk in [1, 2, 3, 5, 4096, stream.len()] {
            let mut dec = FrameDecoder::new();
            let mut got = Vec::new();
            for piece in stream.chunks(chunk) {
                got.extend(decode_all(&mut dec, piece).unwrap());
            }
            assert_eq!(got, msgs, "chunk size {chunk}");
            assert!(dec.is_idle());
        }
    }

    #[test]
    fn empty_message_completes_at_header() {
        let mut dec = FrameDecoder::new();
        assert_eq!(dec.feed(&[0, 0, 0, 0]).unwrap(), (4, Some(vec![])));
    }

    #[test]
    fn oversized_announcement_is_refused_before_allocation() {
        let mut dec = FrameDecoder::new();
        let err = dec
            .feed(&(MAX_MESSAGE_LEN as u32 + 1).to_be_bytes())
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("4194305"), "{err}");
        // The limit itself is accepted, and only a bounded buffer is reserved for it.
        let mut dec = FrameDecoder::new();
        let (used, msg) = dec.feed(&(MAX_MESSAGE_LEN as u32).to_be_bytes()).unwrap();
        assert_eq!((used, msg), (4, None));
        let (buf, missing) = dec.direct_target().unwrap();
        assert_eq!(missing, MAX_MESSAGE_LEN);
        assert!(buf.capacity() <= 2 * 1024 * 1024, "{}", buf.capacity());
    }

    /// Records between two ipcez endpoints on a named pipe: the hello first, then ack
    /// records between frames, split anywhere.
    #[test]
    fn records_are_read_only_where_allowed() {
        let mut stream = HELLO.to_vec();
        stream.extend(ack_record(0));
        stream.extend(frame(b"one"));
        stream.extend(ack_record(3));
        stream.extend(ack_record(MAX_ACK_RECORD));
        stream.extend(frame(b""));
        for chunk in [1, 3, stream.len()] {
            let mut dec = FrameDecoder::new();
            dec.set_control(Control::First);
            let mut got = Vec::new();
            for piece in stream.chunks(chunk) {
                got.extend(decode_all(&mut dec, piece).unwrap());
            }
            assert_eq!(got, [b"one".to_vec(), vec![]], "chunk size {chunk}");
            assert_eq!(dec.take_acks(), Some(3 + u64::from(MAX_ACK_RECORD)));
            assert_eq!(dec.take_acks(), None);
        }
        // A listener's first word that is no hello: a custom peer, records are violations.
        let mut dec = FrameDecoder::new();
        dec.set_control(Control::First);
        assert_eq!(decode_all(&mut dec, &frame(b"x")).unwrap(), [b"x".to_vec()]);
        assert!(decode_all(&mut dec, &ack_record(1)).is_err());
        // The hello is a hello only first; elsewhere, and by default, a violation.
        let mut dec = FrameDecoder::new();
        dec.set_control(Control::On);
        assert!(decode_all(&mut dec, &HELLO).is_err());
        assert!(decode_all(&mut FrameDecoder::new(), &ack_record(1)).is_err());
        assert!(decode_all(&mut FrameDecoder::new(), &HELLO).is_err());
    }

    #[test]
    fn check_len_limits() {
        assert!(check_len(MAX_MESSAGE_LEN).is_ok());
        let e = check_len(MAX_MESSAGE_LEN + 1).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(e.get_ref().unwrap().is::<MessageTooLarge>());
    }
}
