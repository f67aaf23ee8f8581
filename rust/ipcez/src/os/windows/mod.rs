//! Windows: named pipes for the stream, named events for the acks.
//!
//! UNTESTED: no Windows target can be built where this project is developed; this module
//! mirrors `os::unix` and is kept small on purpose. See the README's platform table.

pub(crate) mod event;
pub(crate) mod pipe;
