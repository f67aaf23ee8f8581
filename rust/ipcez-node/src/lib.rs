//! The Node.js addon of ipcez: napi-rs classes over the `ipcez` crate, loaded by the npm
//! package in `node/`, whose JavaScript gives them Node's idiom (promises, EventEmitter,
//! async iteration, `Error` subclasses).
//!
//! All I/O runs on the core's own runtime ([`ipcez::runtime`]): napi-rs's tokio
//! integration is not used, so there is one runtime, and Node's event loop never waits.
//! Core failures come back as [`errors::ErrorInfo`] values, never thrown from here.

mod deliver;
mod errors;
mod listener;
mod options;
mod socket;

use std::future::Future;

use napi::bindgen_prelude::{Either, Object, ToNapiValue};
use napi::{Env, Result};
use napi_derive::napi;

use errors::ErrorInfo;
use listener::NativeListener;
use options::{ConnectArgs, ListenArgs};
use socket::NativeSocket;

/// What `which` decided.
#[napi(object, object_from_js = false)]
pub struct Resolution {
    /// `unix`, `pipe` or `websocket`.
    pub transport: String,
    /// The normalized address.
    pub address: String,
}

/// Connects to `endpoint`; the promise gives the socket or the failure.
#[napi(catch_unwind, ts_return_type = "Promise<NativeSocket | ErrorInfo>")]
pub fn connect(env: &Env, endpoint: String, args: Option<ConnectArgs>) -> Result<Object<'_>> {
    let options = args.unwrap_or_default().into_options();
    promise(env, async move {
        let options = options.map_err(ErrorInfo::invalid_argument)?;
        let socket = options.connect(&endpoint).await?;
        Ok(NativeSocket::new(socket))
    })
}

/// Listens on `endpoint`; the promise gives the listener or the failure.
#[napi(catch_unwind, ts_return_type = "Promise<NativeListener | ErrorInfo>")]
pub fn listen(env: &Env, endpoint: String, args: Option<ListenArgs>) -> Result<Object<'_>> {
    let options = args.unwrap_or_default().into_options();
    promise(env, async move {
        let options = options.map_err(ErrorInfo::invalid_argument)?;
        let listener = options.listen(&endpoint).await?;
        Ok(NativeListener::new(listener))
    })
}

/// Runs `work` on the core's runtime; the promise gives its value or its failure (as a
/// value: JavaScript turns it into the right `Error` subclass).
fn promise<T>(
    env: &Env,
    work: impl Future<Output = std::result::Result<T, ErrorInfo>> + Send + 'static,
) -> Result<Object<'_>>
where
    T: ToNapiValue + Send + 'static,
{
    let (deferred, promise) = env.create_deferred()?;
    ipcez::runtime().spawn(async move {
        let outcome = work.await;
        deferred.resolve(move |_| Ok(either(outcome)));
    });
    Ok(promise)
}

/// How `connect` would reach `endpoint`, without connecting.
#[napi(catch_unwind)]
pub fn which(endpoint: String) -> Either<Resolution, ErrorInfo> {
    either(
        ipcez::resolve(&endpoint)
            .map_err(ErrorInfo::from)
            .map(|r| Resolution {
                transport: r.transport.as_str().to_string(),
                address: r.address,
            }),
    )
}

/// The `[data_ready, data_acked]` names of a local endpoint's ack objects.
#[napi(catch_unwind)]
pub fn ack_names(endpoint: String) -> Either<Vec<String>, ErrorInfo> {
    either(
        ipcez::ack_names(&endpoint)
            .map_err(ErrorInfo::from)
            .map(|(ready, acked)| vec![ready, acked]),
    )
}

fn either<T>(r: std::result::Result<T, ErrorInfo>) -> Either<T, ErrorInfo> {
    match r {
        Ok(v) => Either::A(v),
        Err(e) => Either::B(e),
    }
}
