//! `NativeListener`: a core listener as the JavaScript `Listener` class sees it.

use std::sync::{Arc, Weak};

use napi::{Env, Result};
use napi_derive::napi;

use crate::deliver::{Callback, Channel, Closable};
use crate::errors::ErrorInfo;
use crate::socket::NativeSocket;

/// What one wait for a connection gives JavaScript.
#[napi(object, object_from_js = false)]
pub struct Accepted {
    /// The connection (one), unless `error` is set.
    pub items: Vec<NativeSocket>,
    /// Why no connection comes any more (the listener was closed).
    pub error: Option<ErrorInfo>,
}

struct Cell(ipcez::Listener);

impl Closable for Cell {
    fn close_now(&self) {
        self.0.close();
    }
}

/// A listener of the core library (the JavaScript `Listener` wraps it).
#[napi]
pub struct NativeListener {
    cell: Arc<Cell>,
    channel: Channel<Accepted>,
}

impl NativeListener {
    pub(crate) fn new(listener: ipcez::Listener) -> Self {
        NativeListener {
            cell: Arc::new(Cell(listener)),
            channel: Channel::default(),
        }
    }
}

impl Drop for NativeListener {
    fn drop(&mut self) {
        self.cell.0.close();
    }
}

#[napi]
impl NativeListener {
    /// Sets the function connections go to; from then on the listener keeps the process
    /// alive until it is closed or `unref()`'d, and closes with its environment (worker).
    #[napi(catch_unwind, ts_args_type = "onAccepted: (next: Accepted) => void")]
    pub fn start(&mut self, env: Env, on_accepted: Callback<Accepted>) -> Result<()> {
        let owner: Weak<dyn Closable> = Arc::downgrade(&self.cell) as Weak<dyn Closable>;
        self.channel.start(&env, on_accepted, owner)
    }

    /// Asks for the next connection: one call of the `start` function follows. Does
    /// nothing while a pull is still running.
    #[napi(catch_unwind)]
    pub fn pull(&self) {
        let listener = self.cell.0.clone();
        self.channel.pull(async move {
            match listener.accept().await {
                Ok(socket) => Accepted {
                    items: vec![NativeSocket::new(socket)],
                    error: None,
                },
                Err(e) => Accepted {
                    items: Vec::new(),
                    error: Some(e.into()),
                },
            }
        });
    }

    /// Stops listening (idempotent); accepted sockets stay open.
    #[napi(catch_unwind)]
    pub fn close(&mut self) -> Result<()> {
        self.cell.0.close();
        Ok(())
    }

    /// JavaScript got the end (the error that ended it): stop keeping the process alive.
    #[napi(catch_unwind)]
    pub fn release(&mut self, env: Env) -> Result<()> {
        self.channel.end(&env)
    }

    /// Whether an open listener keeps the process alive (`ref()` / `unref()`).
    #[napi(catch_unwind)]
    pub fn set_ref(&mut self, env: Env, keep_alive: bool) -> Result<()> {
        self.channel.set_unrefd(&env, !keep_alive)
    }

    /// The address listened on (a `ws://` URL carries the real port when 0 was asked).
    #[napi(catch_unwind, getter)]
    pub fn address(&self) -> String {
        self.cell.0.address().to_string()
    }

    /// `unix`, `pipe` or `websocket`.
    #[napi(catch_unwind, getter)]
    pub fn transport(&self) -> String {
        self.cell.0.transport().as_str().to_string()
    }
}
