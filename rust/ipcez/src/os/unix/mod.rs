//! Unix: domain sockets for the stream, POSIX named semaphores for the acks.

pub(crate) mod sem;
pub(crate) mod uds;
