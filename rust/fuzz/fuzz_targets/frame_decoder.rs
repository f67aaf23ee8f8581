//! Feeds arbitrary bytes, cut into arbitrary pieces, to the frame decoder: it must never
//! panic, never yield a message over the limit, and the messages it yields, re-framed, must
//! be exactly the input up to where it stopped.
#![no_main]

use ipcez::{FrameDecoder, MAX_MESSAGE_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the piece size, so the fuzzer explores the splits too.
    let Some((&cut, input)) = data.split_first() else {
        return;
    };
    let piece = usize::from(cut).max(1);
    let mut decoder = FrameDecoder::new();
    let mut reframed = Vec::new();
    let mut consumed = 0;
    'outer: for chunk in input.chunks(piece) {
        let mut rest = chunk;
        while !rest.is_empty() {
            match decoder.feed(rest) {
                Ok((used, msg)) => {
                    assert!(used > 0 && used <= rest.len());
                    consumed += used;
                    rest = &rest[used..];
                    if let Some(m) = msg {
                        assert!(m.len() <= MAX_MESSAGE_LEN);
                        reframed.extend_from_slice(&(m.len() as u32).to_be_bytes());
                        reframed.extend_from_slice(&m);
                    }
                }
                Err(e) => {
                    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
                    break 'outer;
                }
            }
        }
    }
    assert!(input[..consumed].starts_with(&reframed));
    if decoder.is_idle() {
        assert_eq!(reframed.len(), consumed);
    }
});
