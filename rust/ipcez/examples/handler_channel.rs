//! A message handler that feeds incoming messages into an mpsc channel.
//!
//! `target=local os=linux cargo run --example handler_channel -- /tmp/ipcez.sock`
//! against a listener that sends something (e.g. `ipcez listen /tmp/ipcez.sock --echo`).

use tokio::sync::mpsc;

#[tokio::main]
async fn main() -> Result<(), ipcez::SocketError> {
    let endpoint = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/tmp/ipcez.sock".into());
    let socket = ipcez::socket_init(&endpoint).await?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    socket.message_handler(move |msg| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(msg);
        }
    })?;
    socket.send_message(b"ping").await?;
    while let Some(msg) = rx.recv().await {
        match msg {
            Ok(bytes) => println!("received {:?}", String::from_utf8_lossy(&bytes)),
            Err(e) => {
                println!("connection ended: {e}");
                break;
            }
        }
        socket.disconnect().await; // one reply is enough; the handler then gets its Err
    }
    Ok(())
}
