//! Async callers on their own runtime never start ipcez's (nor its I/O thread). Alone in
//! its test binary: any other test may start that runtime in the same process.
#![cfg(target_os = "linux")]

mod common;

use common::*;

/// Threads of this process named like ipcez's runtime's.
fn ipcez_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter(|t| {
            let comm = t.as_ref().expect("task").path().join("comm");
            std::fs::read_to_string(comm).is_ok_and(|c| c.trim() == "ipcez-io")
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_connection_on_the_callers_runtime_starts_no_ipcez_thread() {
    within(30, async {
        let path = socket_path("own-runtime.sock");
        let (_l, client, server) = pair(&unix(&path)).await;
        client.send_message(b"ping").await.unwrap();
        assert_eq!(server.recv().await.unwrap(), b"ping");
        server.send_message(b"pong").await.unwrap();
        assert_eq!(client.recv().await.unwrap(), b"pong");
        assert_eq!(ipcez_threads(), 0, "ipcez's own runtime was started");
    })
    .await
}
