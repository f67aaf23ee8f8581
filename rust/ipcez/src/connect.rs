//! Connecting: resolve the endpoint, let its transport connect, wrap the stream in a
//! `Socket`.

use crate::error::SocketError;
use crate::options::ConnectOptions;
use crate::resolve::{Resolution, Transport, resolve};
use crate::runtime::{block_on, runtime};
use crate::socket::Socket;

impl ConnectOptions {
    /// Resolves `endpoint` (see [`crate::resolve`]) and connects.
    pub async fn connect(&self, endpoint: &str) -> Result<Socket, SocketError> {
        self.connect_to(&resolve(endpoint)?).await
    }

    /// Connects to an already resolved endpoint (no environment is read).
    pub async fn connect_to(&self, resolution: &Resolution) -> Result<Socket, SocketError> {
        let address = resolution.address.clone();
        match resolution.transport {
            Transport::WebSocket => {
                let ws = crate::ws::connect(&address, self.handshake_timeout).await?;
                Ok(Socket::from_ws(address, ws, self))
            }
            local if local == crate::os::TRANSPORT => {
                let (stream, acks) = crate::os::connect(&address).await?;
                Ok(Socket::from_local(local, address, stream, acks, self))
            }
            other => Err(SocketError::UnsupportedCombination(
                "local".into(),
                other.as_str().into(),
            )),
        }
    }

    /// [`connect`](Self::connect) for threads outside any async runtime.
    pub fn connect_blocking(&self, endpoint: &str) -> Result<Socket, SocketError> {
        block_on(runtime().handle(), self.connect(endpoint))?
    }
}
