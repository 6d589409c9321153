//! The data plane's transport against raw loopback TCP, in one process:
//! MB/s and CPU seconds per GB of (1) plain TCP, (2) one QUIC stream with
//! the cluster's TLS and transport settings, and (3) the data plane's
//! frames on it (a 1,000-event batch of 100-byte values per frame,
//! encoded, sent, received and checked). `scripts/bench-cluster.sh` runs
//! it; the argument is the megabytes each sends (default 1024).

use std::io::{Read, Write};
use std::time::Instant;
use weir_core::Batch;
use weir_net::frame::{Frame, Received, WireBatch};
use weir_net::pki::{COORDINATOR_NAME, ClusterCa};
use weir_net::{channel, join, tls};

/// CPU seconds (user + system) this process used so far.
fn cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<f64> = after.split_whitespace().map(|f| f.parse().unwrap_or(0.0)).collect();
    // utime and stime are fields 14 and 15; 12 and 13 after the name.
    (fields.get(11).unwrap_or(&0.0) + fields.get(12).unwrap_or(&0.0)) / 100.0
}

fn report(what: &str, bytes: usize, t: Instant, cpu0: f64) {
    let secs = t.elapsed().as_secs_f64();
    let mb = bytes as f64 / 1e6;
    println!("{what:<34} {:>8.0} MB/s  {:>6.2} CPU s per GB", mb / secs, (cpu() - cpu0) / (mb / 1000.0));
}

fn tcp(total: usize) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let reader = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0;
        while got < total {
            match s.read(&mut buf).unwrap() {
                0 => break,
                n => got += n,
            }
        }
        got
    });
    let (t, cpu0) = (Instant::now(), cpu());
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let chunk = vec![7u8; 1 << 20];
    let mut sent = 0;
    while sent < total {
        s.write_all(&chunk).unwrap();
        sent += chunk.len();
    }
    drop(s);
    let got = reader.join().unwrap();
    report("raw TCP, loopback", got, t, cpu0);
}

fn batch() -> Batch {
    let mut b = Batch::new();
    for i in 0..1000u64 {
        b.push_keyed(format!("k{i}").as_bytes(), (i % 128) as u16, &[1u8; 100], i as i64, i);
    }
    b
}

async fn quic(total: usize) {
    let dir = tempfile::tempdir().unwrap();
    let ca = ClusterCa::open_or_create(dir.path()).unwrap();
    let server_id = ca.identity(COORDINATOR_NAME).unwrap();
    let client_id = ca.identity("bench").unwrap();
    let mut server = join::quic_server(tls::server(&server_id, ca.cert_der(), true).unwrap()).unwrap();
    server.transport_config(channel::transport(64));
    let endpoint = channel::endpoint("127.0.0.1:0".parse().unwrap(), Some(server)).unwrap();
    let addr = endpoint.local_addr().unwrap();
    let mut client = join::quic_client(tls::client(&client_id, ca.cert_der()).unwrap()).unwrap();
    client.transport_config(channel::transport(64));
    let mut out = channel::endpoint("127.0.0.1:0".parse().unwrap(), None).unwrap();
    out.set_default_client_config(client);
    let accepting = tokio::spawn(async move { endpoint.accept().await.unwrap().await.unwrap() });
    let connection = out.connect(addr, COORDINATOR_NAME).unwrap().await.unwrap();
    let server_side = accepting.await.unwrap();

    // Raw stream bytes.
    let (t, cpu0) = (Instant::now(), cpu());
    let reader = {
        let c = server_side.clone();
        tokio::spawn(async move {
            let mut r = c.accept_uni().await.unwrap();
            let mut got = 0;
            while let Some(chunk) = r.read_chunk(1 << 20, true).await.unwrap() {
                got += chunk.bytes.len();
            }
            got
        })
    };
    let mut s = connection.open_uni().await.unwrap();
    let chunk = vec![7u8; 1 << 20];
    let mut sent = 0;
    while sent < total {
        s.write_all(&chunk).await.unwrap();
        sent += chunk.len();
    }
    s.finish().unwrap();
    let got = reader.await.unwrap();
    report("QUIC stream (mTLS), loopback", got, t, cpu0);
    println!("{:<34} {:>8} bytes", "  (path MTU reached)", connection.stats().path.current_mtu);

    // The data plane's frames.
    let frame = Frame::Data(WireBatch::of(&batch()));
    let frame_bytes = weir_net::frame::encode(&frame).len();
    let frames = total / frame_bytes;
    let (t, cpu0) = (Instant::now(), cpu());
    let reader = {
        let c = server_side.clone();
        tokio::spawn(async move {
            let mut r = c.accept_uni().await.unwrap();
            let mut events = 0;
            while let Some(Received::Data(b)) = channel::recv(&mut r, 128).await.unwrap() {
                events += b.len();
            }
            events
        })
    };
    let mut s = connection.open_uni().await.unwrap();
    for _ in 0..frames {
        channel::send(&mut s, &Frame::Data(WireBatch::of(&batch()))).await.unwrap();
    }
    s.finish().unwrap();
    let events = reader.await.unwrap();
    assert_eq!(events, frames * 1000);
    report("data-plane frames on QUIC", frames * frame_bytes, t, cpu0);
    println!("{:<34} {:>8.0} events/s", "  (1,000-event frames)", events as f64 / t.elapsed().as_secs_f64());
    connection.close(0u32.into(), b"done");
}

fn main() {
    let mb: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1024);
    let total = mb << 20;
    tcp(total);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(quic(total));
}
