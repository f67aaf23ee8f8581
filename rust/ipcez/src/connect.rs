//! Connecting: resolve the endpoint, let its transport connect, wrap the stream in a
//! `Socket`.

use crate::budget::ReadBudget;
use crate::error::{SocketError, invalid_input};
use crate::options::ConnectOptions;
use crate::resolve::{Resolution, Transport, resolve};
use crate::runtime::block_on_own;
use crate::socket::Socket;

impl ConnectOptions {
    /// Resolves `endpoint` (see [`crate::resolve`]) and connects.
    pub async fn connect(&self, endpoint: &str) -> Result<Socket, SocketError> {
        self.connect_to(&resolve(endpoint)?).await
    }

    /// Connects to an already resolved endpoint (no environment is read).
    pub async fn connect_to(&self, resolution: &Resolution) -> Result<Socket, SocketError> {
        let address = resolution.address.clone();
        if resolution.transport != Transport::WebSocket && !self.subprotocols.is_empty() {
            return Err(invalid_input(format!(
                "subprotocols apply to WebSocket connections only; {address} is a {} endpoint",
                resolution.transport.as_str()
            )));
        }
        match resolution.transport {
            Transport::WebSocket => {
                let ws = crate::ws::connect(&address, &self.subprotocols, self.handshake_timeout)
                    .await?;
                Ok(Socket::from_ws(address, ws, None, self))
            }
            local if local == crate::os::TRANSPORT => {
                let (stream, acks) = crate::os::connect(&address).await?;
                let gated = (ReadBudget::unlimited(), None);
                Ok(Socket::from_local(
                    (local, address),
                    stream,
                    acks,
                    gated,
                    self,
                ))
            }
            other => Err(SocketError::UnsupportedCombination(
                "local".into(),
                other.as_str().into(),
            )),
        }
    }

    /// [`connect`](Self::connect) for threads outside any async runtime.
    pub fn connect_blocking(&self, endpoint: &str) -> Result<Socket, SocketError> {
        block_on_own(self.connect(endpoint))?
    }
}
