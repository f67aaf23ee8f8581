//! The parts of a `ws://` / `wss://` URL ipcez uses, checked strictly.

use tokio_tungstenite::tungstenite::http::Uri;

use crate::error::{SocketError, invalid_input};

/// A parsed `ws://` / `wss://` URL.
#[derive(Debug)]
pub(crate) struct WsUrl {
    pub(crate) secure: bool,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) path: String,
}

impl WsUrl {
    pub(crate) fn parse(url: &str) -> Result<WsUrl, SocketError> {
        let bad = |why: &str| {
            invalid_input(format!(
                "invalid WebSocket URL {url:?}: {why}; expected ws://host:port/path or wss://…"
            ))
        };
        let uri: Uri = url.parse().map_err(|e| bad(&format!("{e}")))?;
        let secure = match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
            Some("ws") => false,
            Some("wss") => true,
            _ => return Err(bad("the scheme must be ws or wss")),
        };
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("no host"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        // `Uri::port_u16` gives `None` for a port it cannot read, which would silently
        // mean the default port: read the port text ourselves.
        let authority = uri.authority().map_or("", |a| a.as_str());
        let port = match port_text(authority) {
            None | Some("") => {
                if secure {
                    443
                } else {
                    80
                }
            }
            Some(text) => parse_port(text).ok_or_else(|| {
                bad(&format!(
                    "the port {text:?} is not a number from 0 to 65535"
                ))
            })?,
        };
        let path = match uri.path() {
            "" => "/".to_string(),
            p => p.to_string(),
        };
        Ok(WsUrl {
            secure,
            host,
            port,
            path,
        })
    }
}

/// The text after the port colon of an authority (`user@host:port`, `[v6]:port`), if any.
fn port_text(authority: &str) -> Option<&str> {
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let after_host = match host_port.strip_prefix('[') {
        Some(v6) => &v6[v6.find(']')? + 1..],
        None => &host_port[host_port.find(':')?..],
    };
    after_host.strip_prefix(':')
}

fn parse_port(text: &str) -> Option<u16> {
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Checks that `url` is a usable WebSocket URL.
pub(crate) fn validate_url(url: &str) -> Result<(), SocketError> {
    WsUrl::parse(url).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_parts_and_defaults() {
        let u = WsUrl::parse("ws://127.0.0.1:0/demo").unwrap();
        assert_eq!(
            (u.secure, u.host.as_str(), u.port, u.path.as_str()),
            (false, "127.0.0.1", 0, "/demo")
        );
        let u = WsUrl::parse("WSS://example.com").unwrap();
        assert_eq!((u.secure, u.port, u.path.as_str()), (true, 443, "/"));
        let u = WsUrl::parse("ws://example.com/x").unwrap();
        assert_eq!(u.port, 80);
        let u = WsUrl::parse("ws://[::1]:9000/x").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 9000));
        let u = WsUrl::parse("ws://[::1]/x").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 80));
        let u = WsUrl::parse("ws://h:65535").unwrap();
        assert_eq!(u.port, 65535);
        assert!(WsUrl::parse("ws://").is_err());
    }

    #[test]
    fn a_port_that_is_not_0_to_65535_is_an_error() {
        for url in [
            "ws://h:99999/x",
            "ws://h:65536",
            "ws://h:abc/x",
            "ws://h:-1/x",
            "wss://h:+443/",
            "ws://[::1]:70000/x",
        ] {
            let e = WsUrl::parse(url).unwrap_err();
            let SocketError::Io(io) = &e else {
                panic!("{url}: {e:?}")
            };
            assert_eq!(io.kind(), std::io::ErrorKind::InvalidInput, "{url}");
            // The URL may already be refused by the URI parser; either way it is named.
            assert!(e.to_string().contains(url), "{url}: {e}");
        }
        let e = WsUrl::parse("ws://h:99999/x").unwrap_err().to_string();
        assert!(e.contains("not a number from 0 to 65535"), "{e}");
    }
}
