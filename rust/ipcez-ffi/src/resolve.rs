//! Questions about an endpoint answered without connecting: its transport and address,
//! and the names of its ack objects.

use ipcez::Transport;

use crate::boundary::{call, call_or, text, write_out};
use crate::error::{FfiError, ipcez_error, ipcez_result};
use crate::message::{ipcez_message, new_message};

/// The transport of a resolution, socket or listener.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum ipcez_transport {
    /// Unix domain socket.
    Unix = 1,
    /// WebSocket (`ws://`, `wss://`).
    Websocket = 2,
    /// Windows named pipe.
    NamedPipe = 3,
}

impl From<Transport> for ipcez_transport {
    fn from(t: Transport) -> Self {
        match t {
            Transport::Unix => ipcez_transport::Unix,
            Transport::WebSocket => ipcez_transport::Websocket,
            Transport::NamedPipe => ipcez_transport::NamedPipe,
        }
    }
}

/// Resolves an endpoint without connecting: the transport (an `ipcez_transport`) and the
/// normalized address as a new message.
///
/// # Safety
/// `endpoint` is valid for `endpoint_len` bytes; out-pointers are valid for writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_resolve(
    endpoint: *const u8,
    endpoint_len: usize,
    out_transport: *mut u32,
    out_address: *mut *mut ipcez_message,
    out_err: *mut *mut ipcez_error,
) -> ipcez_result {
    call(out_err, || {
        let endpoint = unsafe { text(endpoint, endpoint_len, "endpoint") }?;
        let r = ipcez::resolve(endpoint)?;
        unsafe {
            write_out(out_transport, ipcez_transport::from(r.transport) as u32);
            write_out(out_address, new_message(r.address.into_bytes()));
        }
        Ok(ipcez_result::Ok)
    })
}

/// The `(data_ready, data_acked)` names of an endpoint's ack protocol, as two new messages.
///
/// # Safety
/// As for `ipcez_resolve`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_ack_names(
    endpoint: *const u8,
    endpoint_len: usize,
    out_ready: *mut *mut ipcez_message,
    out_acked: *mut *mut ipcez_message,
    out_err: *mut *mut ipcez_error,
) -> ipcez_result {
    call(out_err, || {
        let endpoint = unsafe { text(endpoint, endpoint_len, "endpoint") }?;
        let (ready, acked) = ipcez::ack_names(endpoint)?;
        unsafe {
            write_out(out_ready, new_message(ready.into_bytes()));
            write_out(out_acked, new_message(acked.into_bytes()));
        }
        Ok(ipcez_result::Ok)
    })
}

/// Which environment variable `ipcez_resolve` reads for `setting` (`"target"` or `"os"`):
/// its name and value as two new messages (`IPCEZ_TARGET`/`IPCEZ_OS` when set, else the bare
/// name), or NULL for both when neither is set. Another setting is an invalid-input error.
///
/// # Safety
/// `setting` is valid for `setting_len` bytes; out-pointers are valid for writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_env_source(
    setting: *const u8,
    setting_len: usize,
    out_name: *mut *mut ipcez_message,
    out_value: *mut *mut ipcez_message,
    out_err: *mut *mut ipcez_error,
) -> ipcez_result {
    call(out_err, || {
        let setting = unsafe { text(setting, setting_len, "setting") }?;
        if !matches!(setting, "target" | "os") {
            return Err(FfiError::invalid_input(format!(
                "unknown setting {setting:?}: use \"target\" or \"os\""
            )));
        }
        let (name, value) = ipcez::env_source(setting)
            .map_or((std::ptr::null_mut(), std::ptr::null_mut()), |(n, v)| {
                (new_message(n.into_bytes()), new_message(v.into_bytes()))
            });
        unsafe {
            write_out(out_name, name);
            write_out(out_value, value);
        }
        Ok(ipcez_result::Ok)
    })
}

/// Whether a failed endpoint detection also prints its guidance to stderr, once per
/// process (on by default). A binding that shows the `IPCEZ_ERROR_FIELD_GUIDANCE` detail
/// through its host's own stderr turns it off.
#[unsafe(no_mangle)]
pub extern "C" fn ipcez_detection_guidance_to_stderr(enabled: bool) {
    call_or((), || ipcez::detection_guidance_to_stderr(enabled))
}
