//! Joining over real QUIC sockets on loopback: refused with the wrong
//! secret, a bad name or another protocol version, each saying so; then
//! accepted, and the joined worker speaks mutual TLS with its certificate.

use std::sync::Arc;
use weir_net::join::{self, JoinRequest, client_endpoint, quic_client, quic_server};
use weir_net::pki::{COORDINATOR_NAME, ClusterCa, JoinToken};
use weir_net::tls;

/// The certificates a connection's peer showed (none: a joining worker).
fn peer_certificates(c: &quinn::Connection) -> usize {
    c.peer_identity()
        .and_then(|i| i.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>().ok())
        .map_or(0, |certs| certs.len())
}

#[test]
fn a_worker_joins_over_quic_and_then_speaks_mutual_tls() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let ca = Arc::new(ClusterCa::open_or_create(dir.path()).unwrap());
        let identity = ca.identity(COORDINATOR_NAME).unwrap();
        let server = quic_server(tls::server(&identity, ca.cert_der(), false).unwrap()).unwrap();
        let endpoint = quinn::Endpoint::server(server, "127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = endpoint.local_addr().unwrap();
        let serving = {
            let ca = ca.clone();
            tokio::spawn(async move {
                while let Some(incoming) = endpoint.accept().await {
                    let Ok(connection) = incoming.await else { continue };
                    let ca = ca.clone();
                    tokio::spawn(async move {
                        if peer_certificates(&connection) == 0 {
                            let _ = join::serve_join(&ca, connection).await;
                            return;
                        }
                        // A member: it says who it is, by its certificate.
                        let (mut send, mut recv) = connection.accept_bi().await.unwrap();
                        let said: String = join::read_message(&mut recv, "greeting").await.unwrap();
                        let n = peer_certificates(&connection);
                        join::write_message(&mut send, &format!("{said} from a member with {n} certificates"), "reply")
                            .await
                            .unwrap();
                        let _ = connection.closed().await;
                    });
                }
            })
        };
        let client = client_endpoint("127.0.0.1:0".parse().unwrap()).unwrap();

        let mut wrong = ca.token().clone();
        wrong.secret = [0; 16];
        let e = join::join(&client, addr, &wrong, "worker-1").await.err().unwrap().to_string();
        assert!(e.contains("refused") && e.contains("secret is not this coordinator's"), "{e}");
        let e = join::join(&client, addr, ca.token(), "Worker_1").await.err().unwrap().to_string();
        assert!(e.contains("not a worker name"), "{e}");
        let other: JoinToken = JoinToken::generate([9; 32]).unwrap();
        let e = join::join(&client, addr, &other, "worker-1").await.err().unwrap().to_string();
        assert!(e.contains("cannot reach the coordinator"), "a token of another CA: {e}");

        let (me, ca_der) = join::join(&client, addr, ca.token(), "worker-1").await.unwrap();
        assert_eq!(ca_der, ca.cert_der());
        let config = quic_client(tls::client(&me, &ca_der).unwrap()).unwrap();
        let connection = client.connect_with(config, addr, COORDINATOR_NAME).unwrap().await.unwrap();
        let (mut send, mut recv) = connection.open_bi().await.unwrap();
        join::write_message(&mut send, &"hello", "greeting").await.unwrap();
        let reply: String = join::read_message(&mut recv, "reply").await.unwrap();
        assert_eq!(reply, "hello from a member with 2 certificates");
        connection.close(0u32.into(), b"done");
        serving.abort();
    });
}

#[test]
fn a_worker_of_another_protocol_version_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ClusterCa::open_or_create(dir.path()).unwrap();
    let secret = ca.token().secret_hex();
    let request = weir_net::pki::Request::new("worker-2").unwrap();
    let asked = |protocol: u32| JoinRequest {
        protocol,
        version: "9.9.9".into(),
        secret: secret.clone(),
        name: "worker-2".into(),
        request: request.request_pem.clone(),
    };
    match join::answer(&ca, &asked(join::PROTOCOL + 1)) {
        join::JoinAnswer::Refused { message } => {
            assert!(
                message.contains("protocol 2") && message.contains("weir 9.9.9") && message.contains("same version"),
                "{message}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(join::answer(&ca, &asked(join::PROTOCOL)), join::JoinAnswer::Accepted { .. }));
    // Names the coordinator checks itself, whatever a client checked.
    for (name, says) in [("weir-coordinator", "reserved"), ("weir-x", "reserved"), ("Worker_1", "not a worker name")] {
        let request = JoinRequest { name: name.into(), ..asked(join::PROTOCOL) };
        match join::answer(&ca, &request) {
            join::JoinAnswer::Refused { message } => assert!(message.contains(says), "{name}: {message}"),
            other => panic!("{name}: {other:?}"),
        }
    }
}
