//! How two ipcez endpoints on a named pipe learn that the other is ipcez, without a custom
//! peer seeing anything (see docs/protocol.md, "The private ack on named pipes").
//!
//! The kernel tells each end which process holds the other end
//! (`GetNamedPipeServerProcessId` / `GetNamedPipeClientProcessId`). Two named objects,
//! never signalled, say what a process is doing on a pipe:
//! - `<pipe>.ipcez_server.<pid>`: held by an ipcez listener for its whole life. A client
//!   whose server process holds it writes the 4-byte hello first, and acks in band.
//! - `<pipe>.ipcez_client.<pid>`: held by an ipcez client from before it connects until
//!   the listener answered its hello. While a client's process holds none, the listener
//!   knows that a connection whose first byte has not come is from a custom client.
//!
//! A third process can only add such names, never remove ours; what it gains is described
//! in docs/reliability-and-security.md.

use std::io;
use std::os::windows::io::RawHandle;

use windows_sys::Win32::Foundation::{ERROR_ACCESS_DENIED, GetLastError};
use windows_sys::Win32::System::Pipes::{GetNamedPipeClientProcessId, GetNamedPipeServerProcessId};
use windows_sys::Win32::System::Threading::{OpenEventW, SYNCHRONIZATION_SYNCHRONIZE};

use super::event::{How, create, open_existing, open_in_order, wide};
use crate::resolve::pipe_ack_names;

/// What one end of a pipe connection does.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Role {
    Server,
    Client,
}

/// The name of `role`'s marker of process `pid` on `pipe` (under `Global\`; the same name
/// under `Local\` where `Global\` is denied).
pub(crate) fn marker_name(pipe: &str, role: Role, pid: u32) -> String {
    let (ready, _) = pipe_ack_names(pipe);
    let base = ready.strip_suffix(".data_ready").unwrap_or(&ready);
    let role = match role {
        Role::Server => "ipcez_server",
        Role::Client => "ipcez_client",
    };
    format!("{base}.{role}.{pid}")
}

/// A marker this process holds; the name lives while some process holds it.
#[derive(Debug)]
pub(crate) struct Marker {
    _handle: super::event::Handle,
    /// Held under `Global\` (else under the session's `Local\`).
    global: bool,
}

impl Marker {
    /// Creates (or opens, when another holder has it already) `name`.
    pub(crate) fn hold(name: &str) -> io::Result<Self> {
        let mut global = true;
        let handle = open_in_order(name, |how, name| {
            global = name.starts_with(r"Global\");
            match how {
                How::Create => create(name),
                How::Open => open_existing(name),
            }
        })
        .map_err(|code| {
            let e = io::Error::from_raw_os_error(code as i32);
            io::Error::new(
                e.kind(),
                format!("cannot create the named event {name}: {e}"),
            )
        })?;
        Ok(Marker {
            _handle: super::event::Handle(handle),
            global,
        })
    }

    /// Held under `Global\`, where a process of any session finds it.
    pub(crate) fn is_global(&self) -> bool {
        self.global
    }

    /// Whether some process holds `name`: `Some(true)` under `Global\`, `Some(false)` only
    /// under this session's `Local\`. A name we may not open exists too.
    pub(crate) fn find(name: &str) -> Option<bool> {
        let local = name
            .strip_prefix(r"Global\")
            .map(|rest| format!(r"Local\{rest}"));
        let names = std::iter::once(name.to_string()).chain(local);
        names
            .zip([true, false])
            .find_map(|(n, global)| exists(&n).then_some(global))
    }
}

/// True while some process holds the event `name`.
fn exists(name: &str) -> bool {
    let w = wide(name);
    // SAFETY: NUL-terminated UTF-16 name; the handle is closed at once.
    let h = unsafe { OpenEventW(SYNCHRONIZATION_SYNCHRONIZE, 0, w.as_ptr()) };
    if h.is_null() {
        // SAFETY: no preconditions.
        return unsafe { GetLastError() } == ERROR_ACCESS_DENIED;
    }
    drop(super::event::Handle(h));
    true
}

/// The process at the other end of a connected pipe handle, as the kernel knows it.
pub(crate) fn peer_pid(handle: RawHandle, role: Role) -> io::Result<u32> {
    let mut pid = 0u32;
    // SAFETY: a connected pipe handle, valid while the caller holds its stream.
    let ok = unsafe {
        match role {
            Role::Server => GetNamedPipeClientProcessId(handle as _, &mut pid),
            Role::Client => GetNamedPipeServerProcessId(handle as _, &mut pid),
        }
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(pid)
}

/// What one end of a new connection knows about the other, for its acks.
#[derive(Debug)]
pub(crate) enum Handshake {
    /// A client. `Some`: the listener is ipcez and our hello went first; the intent marker
    /// is held until the listener answers it. `None`: a custom listener (or no marker).
    Client { intent: Option<Marker> },
    /// A listener's end: the intent marker name of the client's process (`None` when the
    /// kernel did not say which process it is).
    Server { client_intent: Option<String> },
}
