//! Platform backends: one complete local transport per OS family, behind `cfg` at the
//! module boundary.

#[cfg(unix)]
pub(crate) mod unix;
#[cfg(windows)]
pub(crate) mod windows;

#[cfg(not(any(unix, windows)))]
compile_error!("ipcez supports Unix-like systems and Windows only");
