//! ipcez from Rust, for `bench/compare.py`: the same workloads as the Python benchmarks,
//! without the binding, so the binding's cost is visible.
//!
//! ```text
//! bench serve ENDPOINT            # echo server: echoes messages starting with b'E', swallows others
//! bench client ENDPOINT [ROUNDS]  # prints one JSON object with the figures
//! ```
//! Local endpoints need `target=local os=linux`. Build with `--release`.

use std::time::{Duration, Instant};

use ipcez::{ConnectOptions, ListenOptions, Socket, SocketError};

fn send(s: &Socket, msg: &[u8]) -> Result<(), SocketError> {
    s.send_frame_blocking(msg)?;
    while !s.wait_ack_blocking(Duration::from_secs(5))? {}
    Ok(())
}

fn recv(s: &Socket) -> Result<Vec<u8>, SocketError> {
    Ok(s.recv_blocking(None)?.expect("no timeout given"))
}

fn serve(endpoint: &str) -> Result<(), SocketError> {
    let listener = ListenOptions::default().listen_blocking(endpoint)?;
    println!("{}", listener.address());
    loop {
        let Some(socket) = listener.accept_blocking(None)? else {
            continue;
        };
        std::thread::spawn(move || {
            while let Ok(msg) = recv(&socket) {
                if msg.first() == Some(&b'E') && send(&socket, &msg).is_err() {
                    break;
                }
            }
        });
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn latencies(
    rounds: usize,
    mut f: impl FnMut() -> Result<(), SocketError>,
) -> Result<(f64, f64), SocketError> {
    for _ in 0..rounds / 10 {
        f()?; // warm-up
    }
    let mut us = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        f()?;
        us.push(t.elapsed().as_secs_f64() * 1e6);
    }
    us.sort_by(f64::total_cmp);
    Ok((percentile(&us, 0.5), percentile(&us, 0.99)))
}

fn client(endpoint: &str, rounds: usize) -> Result<(), SocketError> {
    let s = ConnectOptions::default().connect_blocking(endpoint)?;
    let small_send = vec![b'S'; 64];
    let (send_p50, send_p99) = latencies(rounds, || send(&s, &small_send))?;
    let small_echo = vec![b'E'; 64];
    let (rtt_p50, rtt_p99) = latencies(rounds, || {
        send(&s, &small_echo)?;
        recv(&s).map(drop)
    })?;
    let mut big = vec![0u8; 1024 * 1024];
    big[0] = b'E';
    let big_rounds = (rounds / 20).max(20);
    let t = Instant::now();
    for _ in 0..big_rounds {
        send(&s, &big)?;
        recv(&s)?;
    }
    let echo_gbps = (2 * big.len() * big_rounds) as f64 / t.elapsed().as_secs_f64() / 1e9;
    let kib = vec![b'S'; 1024];
    let t = Instant::now();
    let n = rounds * 2;
    for _ in 0..n {
        send(&s, &kib)?;
    }
    let msgs_per_s = n as f64 / t.elapsed().as_secs_f64();
    println!(
        "{{\"send_p50_us\": {send_p50:.2}, \"send_p99_us\": {send_p99:.2}, \
         \"rtt_p50_us\": {rtt_p50:.2}, \"rtt_p99_us\": {rtt_p99:.2}, \
         \"echo_1mib_gbps\": {echo_gbps:.3}, \"msgs_per_s_1kib\": {msgs_per_s:.0}}}"
    );
    s.close();
    Ok(())
}

fn main() -> Result<(), SocketError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["serve", endpoint] => serve(endpoint),
        ["client", endpoint] => client(endpoint, 2000),
        ["client", endpoint, rounds] => {
            client(endpoint, rounds.parse().expect("ROUNDS is a number"))
        }
        _ => {
            eprintln!("usage: bench serve ENDPOINT | bench client ENDPOINT [ROUNDS]");
            std::process::exit(2)
        }
    }
}
