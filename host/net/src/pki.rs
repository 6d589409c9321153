//! The cluster's certificates, as simple to join as `kubeadm join`:
//!
//! - At its first start the coordinator makes a CA in its data directory
//!   ([`ClusterCa::open_or_create`]) and a [`JoinToken`]: the CA's SHA-256
//!   fingerprint and a secret.
//! - A worker started with the token makes its own key and a certificate
//!   request, checks the coordinator's certificate against the fingerprint
//!   (it needs no CA file), and sends the request with the secret; the CA
//!   signs it ([`ClusterCa::issue`]) with the worker's id as its only name.
//! - From then on every connection is mutual TLS under that CA
//!   ([`crate::tls`]); there is no plaintext mode.

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use sha2::{Digest, Sha256};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// What went wrong, naming the file or the part of a token.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file could not be read or written.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What happened and what to do.
        message: String,
    },
    /// A certificate, key or request that does not parse or sign.
    #[error("{0}")]
    Certificate(String),
    /// A join token that is not one.
    #[error(
        "not a join token: {0} (a token reads weir1.<64 hex digits>.<32 hex digits>, as the coordinator printed it)"
    )]
    Token(String),
}

fn file_err(path: &Path, message: impl Into<String>) -> PkiError {
    PkiError::File { path: path.to_owned(), message: message.into() }
}

/// The name every coordinator certificate carries: workers reach the
/// coordinator at any address (an IP, a Service name) and check this name
/// under the cluster CA, not the address.
pub const COORDINATOR_NAME: &str = "weir-coordinator";

/// The SHA-256 of a certificate's DER bytes.
pub type Fingerprint = [u8; 32];

/// The SHA-256 fingerprint of `der`.
pub fn fingerprint(der: &[u8]) -> Fingerprint {
    Sha256::digest(der).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn unhex<const N: usize>(text: &str, what: &str) -> Result<[u8; N], PkiError> {
    if text.len() != 2 * N || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(PkiError::Token(format!("its {what} is not {} hex digits", 2 * N)));
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).expect("invariant: checked hex digits");
    }
    Ok(out)
}

/// A join token: the CA's fingerprint, for the worker to check the
/// coordinator by, and the secret the coordinator checks the worker by.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// The cluster CA's certificate fingerprint.
    pub ca: Fingerprint,
    /// The shared secret.
    pub secret: [u8; 16],
}

impl JoinToken {
    /// A new token for the CA of fingerprint `ca`, with a random secret.
    pub fn generate(ca: Fingerprint) -> Result<JoinToken, PkiError> {
        let mut secret = [0u8; 16];
        getrandom::fill(&mut secret)
            .map_err(|e| PkiError::Certificate(format!("no randomness for a join token's secret: {e}")))?;
        Ok(JoinToken { ca, secret })
    }

    /// The secret in hex, as a join request carries it.
    pub fn secret_hex(&self) -> String {
        hex(&self.secret)
    }

    /// Whether `secret` is this token's, compared in time independent of
    /// where they differ.
    pub fn secret_matches(&self, secret: &[u8]) -> bool {
        secret.len() == self.secret.len() && secret.iter().zip(&self.secret).fold(0, |a, (x, y)| a | (x ^ y)) == 0
    }
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "weir1.{}.{}", hex(&self.ca), hex(&self.secret))
    }
}

/// The secret stays out of logs and panics.
impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JoinToken {{ ca: {}, secret: … }}", hex(&self.ca))
    }
}

impl FromStr for JoinToken {
    type Err = PkiError;

    fn from_str(s: &str) -> Result<JoinToken, PkiError> {
        let s = s.trim();
        let mut parts = s.split('.');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("weir1"), Some(ca), Some(secret), None) => {
                Ok(JoinToken { ca: unhex(ca, "CA fingerprint")?, secret: unhex(secret, "secret")? })
            }
            (Some(v), Some(_), Some(_), None) if v.starts_with("weir") => Err(PkiError::Token(format!(
                "it is of version `{v}`, and this weir reads `weir1`: use the same version of weir on both sides"
            ))),
            _ => Err(PkiError::Token("it does not have three parts separated by dots".into())),
        }
    }
}

/// The cluster's certificate authority, kept in a folder as `ca.pem` (the
/// certificate) and `ca.key` (its key, owner-only), with the join token
/// in `join-token` (owner-only).
pub struct ClusterCa {
    cert_pem: String,
    cert_der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
    token: JoinToken,
}

/// Writes `bytes` to `path` whole or not at all: a temporary file beside
/// it, synced, then renamed over it; `private`: readable by the owner only.
fn write_whole(path: &Path, bytes: &[u8], private: bool) -> Result<(), PkiError> {
    use std::os::unix::fs::OpenOptionsExt;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!("{name}.tmp.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(&tmp)
        .map_err(|e| file_err(&tmp, format!("cannot write: {e}")))?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(|e| file_err(&tmp, format!("cannot write: {e}")))?;
    std::fs::rename(&tmp, path).map_err(|e| file_err(path, format!("cannot put in place: {e}")))?;
    // The rename itself, durable.
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| file_err(dir, format!("cannot sync: {e}")))?;
    }
    Ok(())
}

fn read(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|e| file_err(path, format!("cannot read: {e}")))
}

impl ClusterCa {
    /// The CA in `dir`, made (with its join token) when none of its files
    /// is there. Any other mix — a key without its certificate, say — is
    /// an error naming what to do: a CA is never replaced behind the
    /// workers' backs.
    pub fn open_or_create(dir: &Path) -> Result<ClusterCa, PkiError> {
        let (cert_path, key_path, token_path) = (dir.join("ca.pem"), dir.join("ca.key"), dir.join("join-token"));
        std::fs::create_dir_all(dir).map_err(|e| file_err(dir, format!("cannot make the folder: {e}")))?;
        let present = [&cert_path, &key_path, &token_path].map(|p| p.exists());
        if present.iter().any(|&p| p) && !present.iter().all(|&p| p) {
            let missing: Vec<String> = [&cert_path, &key_path, &token_path]
                .iter()
                .zip(present)
                .filter(|(_, p)| !p)
                .map(|(path, _)| path.display().to_string())
                .collect();
            return Err(file_err(
                dir,
                format!(
                    "holds part of a cluster CA ({} missing): restore it from a backup, or remove ca.pem, ca.key \
                     and join-token to make a new CA (every worker must then join again with the new token)",
                    missing.join(", ")
                ),
            ));
        }
        if !present[0] {
            let key = KeyPair::generate().map_err(|e| PkiError::Certificate(format!("cannot make the CA key: {e}")))?;
            let mut params = CertificateParams::default();
            params.distinguished_name.push(DnType::CommonName, "weir cluster CA");
            params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            let now = time::OffsetDateTime::now_utc();
            params.not_before = now - time::Duration::days(1);
            params.not_after = now + time::Duration::days(3650);
            let cert = params
                .self_signed(&key)
                .map_err(|e| PkiError::Certificate(format!("cannot make the CA certificate: {e}")))?;
            let token = JoinToken::generate(fingerprint(cert.der()))?;
            write_whole(&key_path, key.serialize_pem().as_bytes(), true)?;
            write_whole(&token_path, format!("{token}\n").as_bytes(), true)?;
            write_whole(&cert_path, cert.pem().as_bytes(), false)?;
        }
        let cert_pem = read(&cert_path)?;
        use std::os::unix::fs::PermissionsExt;
        for private in [&key_path, &token_path] {
            let mode = std::fs::metadata(private).map_err(|e| file_err(private, e.to_string()))?.permissions().mode();
            if mode & 0o077 != 0 {
                return Err(file_err(
                    private,
                    format!(
                        "is readable by others (mode {:o}): `chmod 600` it, and make a new CA if others read it",
                        mode & 0o777
                    ),
                ));
            }
        }
        let key_pem = read(&key_path)?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| file_err(&key_path, format!("not a key: {e}")))?;
        let cert_der = rustls::pki_types::pem::PemObject::from_pem_slice(cert_pem.as_bytes())
            .map(|c: rustls::pki_types::CertificateDer<'static>| c.to_vec())
            .map_err(|e| file_err(&cert_path, format!("not a PEM certificate: {e}")))?;
        // The pair belongs together (rcgen would sign with any key).
        let (_, parsed) = x509_parser::parse_x509_certificate(&cert_der)
            .map_err(|e| file_err(&cert_path, format!("not a certificate: {e}")))?;
        if parsed.public_key().subject_public_key.data.as_ref() != rcgen::PublicKeyData::der_bytes(&key) {
            return Err(file_err(&key_path, "is not the key of ca.pem: restore the pair from the same backup"));
        }
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key)
            .map_err(|e| file_err(&cert_path, format!("not a CA certificate: {e}")))?;
        let token: JoinToken = read(&token_path)?.parse().map_err(|e| file_err(&token_path, format!("{e}")))?;
        if token.ca != fingerprint(&cert_der) {
            return Err(file_err(
                &token_path,
                "belongs to another CA than ca.pem: remove it and restart the coordinator to make a new token",
            ));
        }
        Ok(ClusterCa { cert_pem, cert_der, issuer, token })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// Its fingerprint, as join tokens carry it.
    pub fn fingerprint(&self) -> Fingerprint {
        fingerprint(&self.cert_der)
    }

    /// The join token workers join with.
    pub fn token(&self) -> &JoinToken {
        &self.token
    }

    /// Signs a certificate request (PEM) for `name`, the only name the
    /// certificate carries whatever the request asks for, valid for
    /// client and server authentication for a year. Returns it, PEM.
    pub fn issue(&self, name: &str, request_pem: &str) -> Result<String, PkiError> {
        let request = CertificateSigningRequestParams::from_pem(request_pem)
            .map_err(|e| PkiError::Certificate(format!("not a certificate request: {e}")))?;
        let params = leaf_params(name)?;
        let cert = params
            .signed_by(&request.public_key, &self.issuer)
            .map_err(|e| PkiError::Certificate(format!("cannot sign the request for `{name}`: {e}")))?;
        Ok(cert.pem())
    }

    /// A certificate and key of the CA's own for `name` (the coordinator's,
    /// [`COORDINATOR_NAME`], or its embedded worker's).
    pub fn identity(&self, name: &str) -> Result<Identity, PkiError> {
        let key = KeyPair::generate().map_err(|e| PkiError::Certificate(format!("cannot make a key: {e}")))?;
        let cert = leaf_params(name)?
            .signed_by(&key, &self.issuer)
            .map_err(|e| PkiError::Certificate(format!("cannot sign `{name}`'s certificate: {e}")))?;
        Ok(Identity { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }
}

fn leaf_params(name: &str) -> Result<CertificateParams, PkiError> {
    let dns =
        name.try_into().map_err(|e| PkiError::Certificate(format!("`{name}` cannot be a certificate's name: {e}")))?;
    let mut params = CertificateParams::default();
    // A random serial (rcgen's default comes from the key).
    let mut serial = [0u8; 16];
    getrandom::fill(&mut serial).map_err(|e| PkiError::Certificate(format!("no randomness for a serial: {e}")))?;
    serial[0] &= 0x7f;
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    params.distinguished_name.push(DnType::CommonName, name);
    params.subject_alt_names = vec![SanType::DnsName(dns)];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(365);
    Ok(params)
}

/// A certificate with its key, PEM.
#[derive(Clone)]
pub struct Identity {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key.
    pub key_pem: String,
}

/// A worker's side of joining: its key and the request the CA signs.
pub struct Request {
    /// The key, PEM: it never leaves the worker.
    pub key_pem: String,
    /// The certificate request, PEM.
    pub request_pem: String,
}

impl Request {
    /// A new key and a request for `name`.
    pub fn new(name: &str) -> Result<Request, PkiError> {
        let key = KeyPair::generate().map_err(|e| PkiError::Certificate(format!("cannot make a key: {e}")))?;
        let mut params = leaf_params(name)?;
        // The CA picks the serial (a request cannot carry one).
        params.serial_number = None;
        let request = params
            .serialize_request(&key)
            .map_err(|e| PkiError::Certificate(format!("cannot make a certificate request: {e}")))?;
        let request_pem =
            request.pem().map_err(|e| PkiError::Certificate(format!("cannot write a certificate request: {e}")))?;
        Ok(Request { key_pem: key.serialize_pem(), request_pem })
    }
}

/// Certificates an operator brought instead of the coordinator's CA: a
/// certificate with its key, and the CA that signed every peer's.
#[derive(Clone)]
pub struct OwnCertificates {
    /// This process's certificate and key.
    pub identity: Identity,
    /// The CA certificate, DER (peers' certificates must chain to it).
    pub ca_der: Vec<u8>,
    /// The name the certificate gives (its first DNS name: peers know it
    /// by that).
    pub name: String,
    /// Every DNS name it gives.
    pub names: Vec<String>,
    /// Whether it may serve TLS and authenticate a client (its extended
    /// key usages; none listed: any).
    usages: (bool, bool),
}

impl OwnCertificates {
    /// Reads `cert` and `key` (PEM) and the CA certificate `ca` (PEM),
    /// each refused with its path and what is wrong.
    pub fn load(cert: &Path, key: &Path, ca: &Path) -> Result<OwnCertificates, PkiError> {
        let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| file_err(p, format!("cannot read it: {e}")));
        let (cert_pem, key_pem, ca_pem) = (read(cert)?, read(key)?, read(ca)?);
        let der_of = |p: &Path, pem_text: &str| -> Result<Vec<u8>, PkiError> {
            let (_, pem) = x509_parser::pem::parse_x509_pem(pem_text.as_bytes())
                .map_err(|e| file_err(p, format!("not a PEM certificate: {e}")))?;
            Ok(pem.contents)
        };
        let ca_der = der_of(ca, &ca_pem)?;
        let der = der_of(cert, &cert_pem)?;
        let (_, parsed) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| file_err(cert, format!("not an X.509 certificate: {e}")))?;
        let names: Vec<String> = parsed
            .subject_alternative_name()
            .ok()
            .flatten()
            .map(|names| {
                let dns = names.value.general_names.iter().filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => Some((*d).to_owned()),
                    _ => None,
                });
                dns.collect()
            })
            .unwrap_or_default();
        let name = names.first().cloned().ok_or_else(|| {
            file_err(cert, "names no DNS name (subject alternative name): peers know it by that name")
        })?;
        if !key_pem.contains("PRIVATE KEY") {
            return Err(file_err(key, "not a PEM private key"));
        }
        let usages = match parsed.extended_key_usage() {
            Ok(Some(eku)) => (eku.value.any || eku.value.server_auth, eku.value.any || eku.value.client_auth),
            Ok(None) => (true, true),
            Err(e) => return Err(file_err(cert, format!("its extended key usage cannot be read: {e}"))),
        };
        if key_pem.contains("ENCRYPTED") {
            return Err(file_err(key, "is encrypted: give the key unencrypted (PEM, PKCS #8 or SEC1)"));
        }
        Ok(OwnCertificates { identity: Identity { cert_pem, key_pem }, ca_der, name, names, usages })
    }

    /// Whether it allows what its holder does with it: serve TLS (the
    /// coordinator, and a worker's data plane) and, with `client`, show it
    /// as a client (a worker). `Err`: which usage to add.
    pub fn check_usages(&self, client: bool) -> Result<(), String> {
        let (server, as_client) = self.usages;
        let missing: Vec<&str> = [(!server).then_some("serverAuth"), (client && !as_client).then_some("clientAuth")]
            .into_iter()
            .flatten()
            .collect();
        match missing.is_empty() {
            true => Ok(()),
            false => Err(format!(
                "the certificate for `{}` lacks the extended key usage {}: issue it with {}",
                self.name,
                missing.join(" and "),
                if client { "both serverAuth and clientAuth" } else { "serverAuth" }
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate for `name` with these extended key
    /// usages, written as cert, key and CA files in `dir`.
    fn files(dir: &Path, name: &str, usages: Vec<ExtendedKeyUsagePurpose>) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
        params.extended_key_usages = usages;
        let cert = params.self_signed(&key).unwrap();
        let (c, k) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }

    #[test]
    fn own_certificates_name_their_holder_and_say_which_key_usage_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = files(dir.path(), "w1", vec![ExtendedKeyUsagePurpose::ClientAuth]);
        let own = OwnCertificates::load(&c, &k, &c).unwrap();
        assert_eq!(own.name, "w1");
        let e = own.check_usages(true).unwrap_err();
        assert!(e.contains("lacks the extended key usage serverAuth"), "{e}");
        let (c, k) = files(dir.path(), "w2", vec![]);
        assert!(OwnCertificates::load(&c, &k, &c).unwrap().check_usages(true).is_ok(), "none listed: any");
        let (c, k) = files(dir.path(), "weir-coordinator", vec![ExtendedKeyUsagePurpose::ServerAuth]);
        let own = OwnCertificates::load(&c, &k, &c).unwrap();
        assert!(own.check_usages(false).is_ok() && own.check_usages(true).is_err());
        let e = OwnCertificates::load(&k, &k, &c).err().unwrap().to_string();
        assert!(
            e.contains("weir-coordinator.key") && e.contains("not an X.509 certificate"),
            "a key given as the certificate: {e}"
        );
    }
}
