//! A minimal end-to-end example, self-contained: a listener and a client in one
//! process, over a Unix socket (local) and a WebSocket (remote).
//!
//! `target=local os=linux cargo run --example end_to_end`

use std::time::Instant;

async fn exchange(endpoint: &str) -> Result<(), ipcez::SocketError> {
    let listener = ipcez::listen(endpoint).await?;
    let address = listener.address().to_string();
    let server = tokio::spawn(async move {
        let socket = listener.accept().await?;
        while let Ok(msg) = socket.recv().await {
            socket.send_message(&msg).await?; // echo
        }
        Ok::<_, ipcez::SocketError>(())
    });
    let client = ipcez::socket_init(&address).await?;
    let start = Instant::now();
    client.send_message(b"hello").await?;
    let reply = client.recv().await?;
    println!(
        "{:<9} {address}: sent \"hello\", got {:?} back in {:?}",
        client.transport().as_str(),
        String::from_utf8_lossy(&reply),
        start.elapsed()
    );
    client.disconnect().await;
    server.await.expect("server task")?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), ipcez::SocketError> {
    let path = std::env::temp_dir().join(format!("ipcez-e2e-{}.sock", std::process::id()));
    exchange(path.to_str().expect("UTF-8 temp dir")).await?;
    exchange("ws://127.0.0.1:0/e2e").await?;
    Ok(())
}
