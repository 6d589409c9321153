//! The Weir cluster's network (issue 11, in progress): its certificate
//! authority and join tokens ([`pki`]), the mutual-TLS configurations
//! every connection between coordinator and workers uses ([`tls`]), and
//! joining over QUIC ([`join`]), and the data plane's frames, validated on
//! receipt ([`frame`]), sent one QUIC stream per channel with the stream's
//! flow control as credit ([`channel`]), and the control plane's
//! length-prefixed JSON messages ([`control`]).

pub mod channel;
pub mod control;
pub mod frame;
pub mod join;
pub mod pki;
pub mod tls;

#[cfg(test)]
mod tests {
    use super::pki::{COORDINATOR_NAME, ClusterCa, JoinToken, Request};
    use super::tls;
    use rustls::pki_types::ServerName;
    use std::sync::Arc;

    /// A TLS 1.3 handshake between the two configurations, in memory; the
    /// error of whichever side refused.
    fn handshake(
        server: Arc<rustls::ServerConfig>,
        client: Arc<rustls::ClientConfig>,
        name: ServerName<'static>,
    ) -> Result<rustls::ServerConnection, String> {
        let mut s = rustls::ServerConnection::new(server).unwrap();
        let mut c = rustls::ClientConnection::new(client, name).unwrap();
        let mut buf = Vec::new();
        for _ in 0..10 {
            buf.clear();
            c.write_tls(&mut buf).unwrap();
            if !buf.is_empty() {
                s.read_tls(&mut buf.as_slice()).unwrap();
                s.process_new_packets().map_err(|e| format!("server: {e}"))?;
            }
            buf.clear();
            s.write_tls(&mut buf).unwrap();
            if !buf.is_empty() {
                c.read_tls(&mut buf.as_slice()).unwrap();
                c.process_new_packets().map_err(|e| format!("client: {e}"))?;
            }
            if !s.is_handshaking() && !c.is_handshaking() {
                return Ok(s);
            }
        }
        Err("the handshake did not finish".into())
    }

    fn joined(ca: &ClusterCa, name: &str) -> super::pki::Identity {
        let r = Request::new("admin").unwrap();
        // The worker asked for another name: the CA writes its own.
        let cert_pem = ca.issue(name, &r.request_pem).unwrap();
        super::pki::Identity { cert_pem, key_pem: r.key_pem }
    }

    #[test]
    fn a_ca_is_made_once_and_read_back_with_its_token() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ClusterCa::open_or_create(dir.path()).unwrap();
        let again = ClusterCa::open_or_create(dir.path()).unwrap();
        assert_eq!(ca.fingerprint(), again.fingerprint());
        assert_eq!(ca.token(), again.token());
        assert_eq!(ca.token().ca, ca.fingerprint());
        let text = std::fs::read_to_string(dir.path().join("join-token")).unwrap();
        assert_eq!(text.trim(), ca.token().to_string());
        use std::os::unix::fs::PermissionsExt;
        for private in ["ca.key", "join-token"] {
            let mode = std::fs::metadata(dir.path().join(private)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{private} is the owner's only");
        }
        // A key readable by others is refused.
        let key = dir.path().join("ca.key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = ClusterCa::open_or_create(dir.path()).err().unwrap().to_string();
        assert!(e.contains("readable by others") && e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        // Another CA's key beside this certificate is refused.
        let elsewhere = tempfile::tempdir().unwrap();
        ClusterCa::open_or_create(elsewhere.path()).unwrap();
        let own = std::fs::read(&key).unwrap();
        std::fs::write(&key, std::fs::read(elsewhere.path().join("ca.key")).unwrap()).unwrap();
        let e = ClusterCa::open_or_create(dir.path()).err().unwrap().to_string();
        assert!(e.contains("is not the key of ca.pem"), "{e}");
        std::fs::write(&key, own).unwrap();
        assert_eq!(ClusterCa::open_or_create(dir.path()).unwrap().fingerprint(), ca.fingerprint());
        // Part of a CA is never replaced: it is an error naming what is
        // missing; with none of it left, a new CA is made.
        std::fs::remove_file(dir.path().join("ca.pem")).unwrap();
        let e = ClusterCa::open_or_create(dir.path()).err().unwrap().to_string();
        assert!(e.contains("holds part of a cluster CA") && e.contains("ca.pem"), "{e}");
        std::fs::remove_file(dir.path().join("ca.key")).unwrap();
        std::fs::remove_file(dir.path().join("join-token")).unwrap();
        let other = ClusterCa::open_or_create(dir.path()).unwrap();
        assert_ne!(other.fingerprint(), ca.fingerprint());
    }

    #[test]
    fn tokens_read_back_and_bad_ones_say_what_is_wrong() {
        let t = JoinToken::generate([7; 32]).unwrap();
        let text = t.to_string();
        assert_eq!(text.parse::<JoinToken>().unwrap(), t);
        assert!(!format!("{t:?}").contains(&text[72..]), "the secret stays out of Debug");
        assert!(t.secret_matches(&t.secret) && !t.secret_matches(&[0; 16]) && !t.secret_matches(&[]));
        for (bad, says) in [
            ("", "three parts"),
            ("weir1.abc", "three parts"),
            ("weir2.00.00", "version `weir2`"),
            (&text.replace("weir1.", "weir1.zz"), "64 hex digits"),
            (&text[..text.len() - 2], "secret is not 32 hex digits"),
        ] {
            let e = bad.parse::<JoinToken>().err().unwrap().to_string();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }

    #[test]
    fn mutual_tls_under_the_cluster_ca_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ClusterCa::open_or_create(dir.path()).unwrap();
        let coordinator = ca.identity(COORDINATOR_NAME).unwrap();
        let worker = joined(&ca, "worker-1");
        let server = tls::server(&coordinator, ca.cert_der(), true).unwrap();

        let s =
            handshake(server.clone(), tls::client(&worker, ca.cert_der()).unwrap(), tls::coordinator_name()).unwrap();
        // The server sees the name the CA wrote (DER holds it as text).
        let peer = s.peer_certificates().unwrap()[0].to_vec();
        assert!(peer.windows(8).any(|w| w == b"worker-1"), "the worker's certificate names it");
        assert!(!peer.windows(5).any(|w| w == b"admin"), "and not the name its request asked for");

        // A worker of another cluster's CA is refused, and so is a client
        // without a certificate.
        let stranger_dir = tempfile::tempdir().unwrap();
        let stranger_ca = ClusterCa::open_or_create(stranger_dir.path()).unwrap();
        let stranger = joined(&stranger_ca, "worker-1");
        let e =
            handshake(server.clone(), tls::client(&stranger, stranger_ca.cert_der()).unwrap(), tls::coordinator_name())
                .err()
                .unwrap();
        assert!(e.contains("certificate"), "{e}");
        let e = handshake(server, tls::joining(ca.fingerprint()).unwrap(), tls::coordinator_name()).err().unwrap();
        assert!(e.contains("certificate"), "{e}");

        // A worker does not take a server of another CA for its coordinator.
        let fake = stranger_ca.identity(COORDINATOR_NAME).unwrap();
        let fake_server = tls::server(&fake, stranger_ca.cert_der(), true).unwrap();
        let e = handshake(fake_server, tls::client(&worker, ca.cert_der()).unwrap(), tls::coordinator_name())
            .err()
            .unwrap();
        assert!(e.starts_with("client:"), "{e}");
    }

    #[test]
    fn a_joining_worker_trusts_the_coordinator_by_the_tokens_fingerprint_only() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ClusterCa::open_or_create(dir.path()).unwrap();
        let coordinator = ca.identity(COORDINATOR_NAME).unwrap();
        // The join endpoint takes clients without certificates.
        let join = tls::server(&coordinator, ca.cert_der(), false).unwrap();
        handshake(join.clone(), tls::joining(ca.token().ca).unwrap(), tls::coordinator_name()).unwrap();
        let e = handshake(join.clone(), tls::joining([1; 32]).unwrap(), tls::coordinator_name()).err().unwrap();
        assert!(e.contains("not of the CA the join token names"), "{e}");
        // A server of another CA that shows the real CA certificate beside
        // its own is refused: the chain is checked under the CA found.
        let stranger_dir = tempfile::tempdir().unwrap();
        let stranger = ClusterCa::open_or_create(stranger_dir.path()).unwrap();
        let forged = tls::server(&stranger.identity(COORDINATOR_NAME).unwrap(), ca.cert_der(), false).unwrap();
        let e = handshake(forged, tls::joining(ca.token().ca).unwrap(), tls::coordinator_name()).err().unwrap();
        assert!(e.starts_with("client:"), "{e}");
        // The name is checked under the CA too.
        let other = ServerName::try_from("someone-else").unwrap();
        let e = handshake(join, tls::joining(ca.token().ca).unwrap(), other).err().unwrap();
        assert!(e.starts_with("client:"), "{e}");
        // A request that is not one is refused with a message.
        let e = ca.issue("worker-2", "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n");
        assert!(e.err().unwrap().to_string().contains("not a certificate request"));
    }
}
