//! rustls configurations of the cluster's connections: mutual TLS under
//! the cluster CA for everything, and, for a worker joining with a token,
//! a client that trusts the coordinator by the CA fingerprint the token
//! carries (it has no CA file and no certificate yet).

use crate::pki::{COORDINATOR_NAME, Fingerprint, Identity, PkiError, fingerprint};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use std::sync::Arc;

/// The cluster's protocol over TLS (ALPN): a peer speaking anything else
/// is refused at the handshake.
pub const ALPN: &[u8] = b"weir/1";

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_err(what: &str, e: impl std::fmt::Display) -> PkiError {
    PkiError::Certificate(format!("{what}: {e}"))
}

fn chain(
    identity: &Identity,
    ca_der: &[u8],
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), PkiError> {
    // The leaf and any intermediates after it (a certificate file of an
    // operator's PKI often holds both).
    let mut certs = CertificateDer::pem_slice_iter(identity.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_err("a certificate", e))?;
    if certs.is_empty() {
        return Err(tls_err("a certificate", "the file holds none"));
    }
    let key = PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes()).map_err(|e| tls_err("a private key", e))?;
    // The CA goes with them: a joining worker finds it there.
    certs.push(CertificateDer::from(ca_der.to_vec()));
    Ok((certs, key))
}

fn roots(ca_der: &[u8]) -> Result<RootCertStore, PkiError> {
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(ca_der.to_vec())).map_err(|e| tls_err("the cluster CA", e))?;
    Ok(roots)
}

/// A server (the coordinator, or a worker taking data) with `identity`.
/// `clients`: every client must show a certificate of the CA; without, a
/// client may come without one (the join endpoint, which then checks the
/// token's secret before anything else).
pub fn server(identity: &Identity, ca_der: &[u8], clients: bool) -> Result<Arc<ServerConfig>, PkiError> {
    let (certs, key) = chain(identity, ca_der)?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca_der)?), provider());
    let verifier = match clients {
        true => verifier.build(),
        false => verifier.allow_unauthenticated().build(),
    }
    .map_err(|e| tls_err("the client verifier", e))?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls_err("TLS 1.3", e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| tls_err("the server certificate", e))?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// A client with `identity`, trusting servers of the CA only.
pub fn client(identity: &Identity, ca_der: &[u8]) -> Result<Arc<ClientConfig>, PkiError> {
    let (certs, key) = chain(identity, ca_der)?;
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls_err("TLS 1.3", e))?
        .with_root_certificates(roots(ca_der)?)
        .with_client_auth_cert(certs, key)
        .map_err(|e| tls_err("the client certificate", e))?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// A joining worker's client: no certificate of its own, and the server
/// trusted when the chain it shows holds the CA of fingerprint `ca` and
/// its certificate, for [`COORDINATOR_NAME`], is signed by that CA.
pub fn joining(ca: Fingerprint) -> Result<Arc<ClientConfig>, PkiError> {
    let verifier = Arc::new(ByFingerprint { ca, provider: provider() });
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls_err("TLS 1.3", e))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// The name clients give for a coordinator (whatever its address).
pub fn coordinator_name() -> ServerName<'static> {
    ServerName::try_from(COORDINATOR_NAME).expect("invariant: a valid DNS name")
}

/// Trusts a server whose chain holds the CA of a known fingerprint, and
/// then checks the server's certificate under that CA as usual (name,
/// validity, signature): the fingerprint stands in for a CA file.
#[derive(Debug)]
struct ByFingerprint {
    ca: Fingerprint,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for ByFingerprint {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(ca) = intermediates.iter().find(|c| fingerprint(c) == self.ca) else {
            return Err(rustls::Error::General(
                "the coordinator's certificate is not of the CA the join token names: check the token, or that \
                 this address is the coordinator"
                    .into(),
            ));
        };
        let roots = roots(ca).map_err(|e| rustls::Error::General(e.to_string()))?;
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        inner.verify_server_cert(end_entity, &[], server_name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// The worker name a connection's peer proved with its certificate (the
/// DNS name the cluster CA wrote in it); `None` for a peer without one (a
/// joining worker).
pub fn peer_name(connection: &quinn::Connection) -> Option<String> {
    let certs = connection.peer_identity()?.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>().ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(certs.first()?.as_ref()).ok()?;
    let names = cert.subject_alternative_name().ok()??;
    names.value.general_names.iter().find_map(|n| match n {
        x509_parser::extensions::GeneralName::DNSName(d) => Some((*d).to_owned()),
        _ => None,
    })
}
