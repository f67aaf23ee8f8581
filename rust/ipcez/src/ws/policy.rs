//! Who a WebSocket listener lets in, and with which subprotocol: the path, the `Origin`
//! check that keeps web pages of other sites out, and the subprotocol choice browsers
//! insist on. Every refusal is logged with the peer's address and the reason.

use std::sync::{Arc, Mutex};

use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode, header};

/// What a WebSocket listener accepts.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    /// The one path upgraded; others get 404.
    pub(crate) path: Arc<str>,
    /// `Origin` values allowed besides the listener's own.
    pub(crate) origins: Arc<[String]>,
    /// Subprotocols the listener speaks.
    pub(crate) subprotocols: Arc<[String]>,
    /// The listener speaks `wss://` (a `Host` without a port then means 443).
    pub(crate) secure: bool,
}

/// The subprotocol a handshake agreed on, filled in by [`Policy::callback`].
pub(crate) type Chosen = Arc<Mutex<Option<String>>>;

impl Policy {
    /// The upgrade (with the chosen subprotocol, if any) or the refusal for `req`.
    pub(crate) fn judge(&self, req: &Request) -> Result<Option<String>, (StatusCode, String)> {
        if req.uri().path() != &*self.path {
            return Err((
                StatusCode::NOT_FOUND,
                format!(
                    "no WebSocket endpoint at {}; this listener serves {}",
                    req.uri().path(),
                    self.path
                ),
            ));
        }
        let text = |name| {
            req.headers()
                .get(name)
                .map(|v: &HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        let origin = text(header::ORIGIN);
        if !origin_allowed(
            origin.as_deref(),
            text(header::HOST).as_deref(),
            self.secure,
            &self.origins,
        ) {
            return Err((
                StatusCode::FORBIDDEN,
                format!(
                    "Origin {} is not allowed; the listener accepts its own origin and those                      given in origins=",
                    origin.unwrap_or_default()
                ),
            ));
        }
        let offered = req
            .headers()
            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok());
        choose_subprotocol(offered, &self.subprotocols).map_err(|offered| {
            let supported = match self.subprotocols.is_empty() {
                true => "none".to_string(),
                false => self.subprotocols.join(", "),
            };
            (
                StatusCode::BAD_REQUEST,
                format!(
                    "none of the offered subprotocols ({}) is supported; this listener                      speaks: {supported}",
                    offered.join(", ")
                ),
            )
        })
    }

    /// tungstenite's handshake callback: answers with the chosen subprotocol (stored in
    /// `chosen`), or refuses with a plain-text reason, logged with `peer`.
    #[allow(clippy::result_large_err)] // the callback's signature is tungstenite's
    pub(crate) fn callback(
        self,
        peer: String,
        chosen: Chosen,
    ) -> impl FnOnce(&Request, Response) -> Result<Response, ErrorResponse> {
        move |req: &Request, mut resp: Response| match self.judge(req) {
            Ok(protocol) => {
                if let Some(p) = &protocol
                    && let Ok(value) = HeaderValue::from_str(p)
                {
                    resp.headers_mut()
                        .insert(header::SEC_WEBSOCKET_PROTOCOL, value);
                }
                *chosen.lock().unwrap_or_else(|p| p.into_inner()) = protocol;
                Ok(resp)
            }
            Err((status, why)) => {
                log::info!(
                    "WebSocket handshake from {peer} for {} refused with {}: {why}",
                    req.uri(),
                    status.as_u16()
                );
                let mut refusal = ErrorResponse::new(Some(format!("ipcez: {why}\n")));
                *refusal.status_mut() = status;
                Err(refusal)
            }
        }
    }
}

/// Whether a request may upgrade, by its `Origin` header.
///
/// Allowed: no `Origin` (most non-browser clients), an origin listed in `allowed` (`*`
/// allows all), or the listener's own origin: the same host and port as the request's
/// `Host` header (`secure`: the listener speaks `wss://`, so a `Host` without a port means
/// 443, else 80). Anything else, `null` included, is refused.
pub(crate) fn origin_allowed(
    origin: Option<&str>,
    host: Option<&str>,
    secure: bool,
    allowed: &[String],
) -> bool {
    let Some(origin) = origin.map(str::trim) else {
        return true;
    };
    let normalized = normalize_origin(origin);
    if allowed
        .iter()
        .any(|a| a == "*" || normalize_origin(a) == normalized)
    {
        return true;
    }
    let (Some((_, origin_host, origin_port)), Some(host)) = (split_origin(origin), host) else {
        return false;
    };
    let Some((host_name, host_port)) = split_host(host.trim(), if secure { 443 } else { 80 })
    else {
        return false;
    };
    origin_host.eq_ignore_ascii_case(&host_name) && origin_port == host_port
}

/// Scheme and host lower-cased, no trailing slash: `HTTP://Example.com/` → `http://example.com`.
fn normalize_origin(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// `scheme://host[:port]` → (scheme, host, port), the port defaulting by scheme.
fn split_origin(origin: &str) -> Option<(String, String, u16)> {
    let (scheme, rest) = origin.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default = match scheme.as_str() {
        "http" | "ws" => 80,
        "https" | "wss" => 443,
        _ => return None,
    };
    let (host, port) = split_host(rest.trim_end_matches('/'), default)?;
    Some((scheme, host, port))
}

/// `host[:port]` or `[v6][:port]` → (host, port); `None` when malformed.
fn split_host(text: &str, default_port: u16) -> Option<(String, u16)> {
    if text.is_empty() || text.contains('/') {
        return None;
    }
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        match after {
            "" => (v6, None),
            p => (v6, Some(p.strip_prefix(':')?)),
        }
    } else {
        match text.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        }
    };
    let port = match port {
        None => default_port,
        Some(p) => p.parse().ok()?,
    };
    (!host.is_empty()).then(|| (host.to_ascii_lowercase(), port))
}

/// The subprotocol to answer with: the first the client offers (its
/// `Sec-WebSocket-Protocol` header values, in order) that `supported` lists.
/// `Ok(None)` when the client offers none; `Err(offered)` when it offers some and the
/// listener supports none of them (a browser would abort such a connection anyway, so it
/// is refused during the handshake).
pub(crate) fn choose_subprotocol<'a>(
    offered_headers: impl IntoIterator<Item = &'a str>,
    supported: &[String],
) -> Result<Option<String>, Vec<String>> {
    let offered: Vec<String> = offered_headers
        .into_iter()
        .flat_map(|h| h.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect();
    if offered.is_empty() {
        return Ok(None);
    }
    offered
        .iter()
        .find(|p| supported.iter().any(|s| s == *p))
        .map(|p| Some(p.clone()))
        .ok_or(offered)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn origins_by_default_and_by_list() {
        let none: Vec<String> = Vec::new();
        let host = Some("127.0.0.1:8765");
        assert!(origin_allowed(None, host, false, &none));
        assert!(origin_allowed(
            Some("http://127.0.0.1:8765"),
            host,
            false,
            &none
        ));
        assert!(origin_allowed(
            Some("HTTP://example.COM"),
            Some("example.com"),
            false,
            &none
        ));
        assert!(origin_allowed(
            Some("https://example.com"),
            Some("example.com"),
            true,
            &none
        ));
        assert!(!origin_allowed(
            Some("https://example.com"),
            Some("example.com"),
            false,
            &none
        ));
        assert!(!origin_allowed(
            Some("http://evil.example"),
            host,
            false,
            &none
        ));
        assert!(!origin_allowed(Some("null"), host, false, &none));
        assert!(!origin_allowed(
            Some("http://127.0.0.1:8766"),
            host,
            false,
            &none
        ));
        assert!(!origin_allowed(
            Some("http://127.0.0.1:8765"),
            None,
            false,
            &none
        ));
        assert!(origin_allowed(
            Some("http://[::1]:9000"),
            Some("[::1]:9000"),
            false,
            &none
        ));
        let listed = list(&["https://app.example/"]);
        assert!(origin_allowed(
            Some("https://APP.example"),
            host,
            false,
            &listed
        ));
        assert!(origin_allowed(
            Some("http://anything"),
            host,
            false,
            &list(&["*"])
        ));
        assert!(origin_allowed(Some("null"), host, false, &list(&["null"])));
    }

    #[test]
    fn the_first_offered_supported_subprotocol_wins() {
        let supported = list(&["v2", "v1"]);
        assert_eq!(choose_subprotocol([], &supported), Ok(None));
        assert_eq!(
            choose_subprotocol(["v1, v2"], &supported),
            Ok(Some("v1".into()))
        );
        assert_eq!(
            choose_subprotocol(["x", "v2"], &supported),
            Ok(Some("v2".into()))
        );
        assert_eq!(
            choose_subprotocol(["x, y"], &supported),
            Err(list(&["x", "y"]))
        );
        assert_eq!(choose_subprotocol(["x"], &[]), Err(list(&["x"])));
    }
}
