//! Arbitrary endpoints and environment values through the pure transport decision: no
//! panic, and the outcome agrees with the documented table.
#![no_main]

use ipcez::{Os, SocketError, Transport, decide};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\u{1}');
    let endpoint = parts.next().unwrap_or("");
    let target = parts.next();
    let os = parts.next();
    for build in [Os::Linux, Os::Windows] {
        let r = decide(
            endpoint,
            target.map(|t| ("target", t)),
            os.map(|o| ("os", o)),
            build,
        );
        let lower = endpoint.to_ascii_lowercase();
        match &r {
            Ok(res) if res.transport == Transport::WebSocket => {
                assert!(lower.starts_with("ws://") || lower.starts_with("wss://"));
            }
            Ok(res) => {
                assert!(!endpoint.is_empty() && !endpoint.contains('\0'));
                assert_eq!(
                    target.map(|t| t.trim().to_ascii_lowercase()).as_deref(),
                    Some("local")
                );
                assert_eq!(res.transport == Transport::Unix, build == Os::Linux);
            }
            Err(SocketError::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput),
            Err(SocketError::Detection(d)) => assert!(!d.message.is_empty()),
            Err(SocketError::UnsupportedCombination(..)) => {}
            Err(other) => panic!("unexpected error kind: {other:?}"),
        }
    }
});
