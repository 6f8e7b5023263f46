//! usage: wsload URL CONNECTIONS SECONDS [MESSAGE_BYTES]
//!
//! Opens CONNECTIONS WebSockets to URL, then on each sends a text message and waits for its
//! echo, over and over, for SECONDS. Prints the messages echoed, the rate, and the p50/p99
//! round trip in microseconds, as `key=value` lines.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: wsload URL CONNECTIONS SECONDS [MESSAGE_BYTES]");
        std::process::exit(2);
    }
    let url = args[1].clone();
    let conns: usize = args[2].parse().unwrap_or(50);
    let secs: f64 = args[3].parse().unwrap_or(5.0);
    let size: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(32);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(url, conns, Duration::from_secs_f64(secs), size));
}

async fn run(url: String, conns: usize, duration: Duration, size: usize) {
    let mut sockets = Vec::with_capacity(conns);
    for _ in 0..conns {
        match tokio_tungstenite::connect_async(url.as_str()).await {
            Ok((ws, _)) => sockets.push(ws),
            Err(e) => {
                eprintln!("connect failed: {e}");
                std::process::exit(1);
            }
        }
    }
    let text = "x".repeat(size);
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for mut ws in sockets {
        let text = text.clone();
        tasks.push(tokio::spawn(async move {
            let mut rtts = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let sent = Instant::now();
                if ws.send(Message::text(text.clone())).await.is_err() {
                    errors += 1;
                    break;
                }
                match ws.next().await {
                    Some(Ok(Message::Text(t))) if t.len() == text.len() => {
                        rtts.push(sent.elapsed().as_micros() as u64)
                    }
                    _ => {
                        errors += 1;
                        break;
                    }
                }
            }
            let _ = ws.close(None).await;
            (rtts, errors)
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let mut rtts: Vec<u64> = Vec::new();
    let mut errors = 0;
    for r in results.into_iter().flatten() {
        rtts.extend(r.0);
        errors += r.1;
    }
    rtts.sort_unstable();
    let pct = |p: f64| rtts.get(((rtts.len() as f64 - 1.0) * p) as usize).copied().unwrap_or(0);
    println!("messages={}", rtts.len());
    println!("rate={:.1}", rtts.len() as f64 / elapsed);
    println!("p50_us={}", pct(0.50));
    println!("p99_us={}", pct(0.99));
    println!("errors={errors}");
}
