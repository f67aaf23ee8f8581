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
            let len = u32::from_be_bytes(self.header) as usize;
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

    #[test]
    fn check_len_limits() {
        assert!(check_len(MAX_MESSAGE_LEN).is_ok());
        let e = check_len(MAX_MESSAGE_LEN + 1).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(e.get_ref().unwrap().is::<MessageTooLarge>());
    }
}
