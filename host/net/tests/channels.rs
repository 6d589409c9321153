//! Channels over real QUIC on loopback, under mutual TLS: every frame
//! arrives checked, and a consumer that stops reading stalls its own
//! channel only — the others on the same connection run to their end.

use std::time::Duration;
use weir_core::Batch;
use weir_net::channel::{self, transport};
use weir_net::frame::{Frame, Received, WireBatch};
use weir_net::join::{quic_client, quic_server};
use weir_net::pki::{COORDINATOR_NAME, ClusterCa};
use weir_net::tls;

const BATCHES: usize = 64;
const EVENTS: usize = 16;

/// A batch of 16 events of 4 KiB: 64 KiB a frame.
fn batch(i: usize) -> Batch {
    let mut b = Batch::new();
    for e in 0..EVENTS {
        b.push_keyed(format!("k{e}").as_bytes(), 5, &vec![b'v'; 4096], (i * EVENTS + e) as i64, e as u64);
    }
    b.mark((i * EVENTS) as i64);
    b
}

/// Two endpoints on loopback under mutual TLS of one CA, connected;
/// `channels`: their transport for that many channels (else quinn's).
struct Link {
    out: quinn::Connection,
    inbound: quinn::Connection,
    _endpoints: (quinn::Endpoint, quinn::Endpoint),
    _dir: tempfile::TempDir,
}

impl Link {
    async fn new(channels: Option<u32>) -> Link {
        let dir = tempfile::tempdir().unwrap();
        let ca = ClusterCa::open_or_create(dir.path()).unwrap();
        let (server_id, client_id) = (ca.identity(COORDINATOR_NAME).unwrap(), ca.identity("worker-1").unwrap());
        let mut server = quic_server(tls::server(&server_id, ca.cert_der(), true).unwrap()).unwrap();
        let mut client_config = quic_client(tls::client(&client_id, ca.cert_der()).unwrap()).unwrap();
        if let Some(n) = channels {
            server.transport_config(transport(n));
            client_config.transport_config(transport(n));
        }
        let endpoint = quinn::Endpoint::server(server, "127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = endpoint.local_addr().unwrap();
        let client = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let accepting = tokio::spawn(async move {
            let c = endpoint.accept().await.unwrap().await.unwrap();
            (endpoint, c)
        });
        let out = client.connect_with(client_config, addr, COORDINATOR_NAME).unwrap().await.unwrap();
        let (endpoint, inbound) = accepting.await.unwrap();
        Link { out, inbound, _endpoints: (endpoint, client), _dir: dir }
    }
}

/// Reads a channel to its end: the events it carried.
async fn drain(mut recv: quinn::RecvStream) -> usize {
    let mut events = 0;
    loop {
        match channel::recv(&mut recv, 128).await.unwrap() {
            Some(Received::Data(b)) => events += b.len(),
            Some(Received::End) | None => return events,
            Some(other) => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn a_stalled_channel_stalls_only_itself() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let link = Link::new(Some(8)).await;
        let (out, inbound) = (&link.out, &link.inbound);

        let mut senders = Vec::new();
        for _ in 0..3 {
            let mut send = out.open_uni().await.unwrap();
            senders.push(tokio::spawn(async move {
                for i in 0..BATCHES {
                    channel::send(&mut send, &Frame::Data(WireBatch::of(&batch(i)))).await.unwrap();
                }
                channel::send(&mut send, &Frame::End).await.unwrap();
                send.finish().unwrap();
                let _ = send.stopped().await;
            }));
        }
        // The streams arrive as they carry data.
        let mut streams = Vec::new();
        for _ in 0..3 {
            streams.push(inbound.accept_uni().await.unwrap());
        }
        let stalled = streams.pop().unwrap();
        let readers: Vec<_> = streams.into_iter().map(|s| tokio::spawn(drain(s))).collect();
        for r in readers {
            let events =
                tokio::time::timeout(Duration::from_secs(60), r).await.expect("a channel ran to its end").unwrap();
            assert_eq!(events, BATCHES * EVENTS, "every event of a running channel arrived");
        }
        // 4 MiB against a 256 KiB credit: the unread channel's sender waits.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let waiting: Vec<bool> = senders.iter().map(|s| !s.is_finished()).collect();
        assert_eq!(waiting.iter().filter(|&&w| w).count(), 1, "only the unread channel's sender waits: {waiting:?}");
        let events = tokio::time::timeout(Duration::from_secs(60), drain(stalled)).await.unwrap();
        assert_eq!(events, BATCHES * EVENTS, "read at last, it carried every event");
        for s in senders {
            tokio::time::timeout(Duration::from_secs(60), s).await.unwrap().unwrap();
        }
        out.close(0u32.into(), b"done");
    });
}

#[test]
fn a_frame_cut_short_or_damaged_fails_its_channel_with_what_is_wrong() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let link = Link::new(None).await;
        let (out, inbound) = (&link.out, &link.inbound);
        let good = weir_net::frame::encode(&Frame::Data(WireBatch::of(&batch(0))));
        let mut damaged = good.to_vec();
        damaged[10] ^= 0xff;
        let cases: Vec<(Vec<u8>, &str)> = vec![
            ([&weir_net::frame::prefix(good.len())[..], &good[..100]].concat(), "ended inside a frame"),
            ([&weir_net::frame::prefix(damaged.len())[..], &damaged[..]].concat(), "checksum does not match"),
            (vec![0xff, 0xff, 0xff, 0xff], "more than"),
            (vec![1, 0], "ended inside a frame"),
        ];
        for (bytes, says) in cases {
            let mut send = out.open_uni().await.unwrap();
            send.write_all(&bytes).await.unwrap();
            send.finish().unwrap();
            let mut recv = inbound.accept_uni().await.unwrap();
            let e = channel::recv(&mut recv, 128).await.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains(says), "{says}: {e}");
        }
        // The connection is still good for other channels.
        let mut send = out.open_uni().await.unwrap();
        channel::send(&mut send, &Frame::Barrier(3)).await.unwrap();
        send.finish().unwrap();
        let mut recv = inbound.accept_uni().await.unwrap();
        assert_eq!(channel::recv(&mut recv, 128).await.unwrap(), Some(Received::Barrier(3)));
        assert_eq!(channel::recv(&mut recv, 128).await.unwrap(), None);
    });
}
