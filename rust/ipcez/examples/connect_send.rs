//! The shortest use: connect with one endpoint string and send one message.
//!
//! Run a listener first (`ipcez listen /tmp/ipcez.sock --echo`, or the `end_to_end`
//! example), then: `target=local os=linux cargo run --example connect_send -- /tmp/ipcez.sock`
//! or, for a remote peer, `cargo run --example connect_send -- ws://127.0.0.1:8765/`.

#[tokio::main]
async fn main() -> Result<(), ipcez::SocketError> {
    let endpoint = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/tmp/ipcez.sock".into());
    let socket = ipcez::socket_init(&endpoint).await?;
    println!(
        "connected to {endpoint} over {}",
        socket.transport().as_str()
    );
    socket.send_message(b"hello from Rust").await?; // local: waits for the ack
    println!("sent and acknowledged");
    socket.disconnect().await;
    Ok(())
}
