//! Joining the cluster over QUIC. A worker with a join token connects to
//! the coordinator's cluster address trusting it by the token's CA
//! fingerprint ([`tls::joining`]), opens one stream, and sends a
//! [`JoinRequest`]: the protocol version, the token's secret, its name
//! and a certificate request. The coordinator checks the version and the
//! secret and answers with a certificate the CA signed for that name, or
//! with why not. The worker then connects again with mutual TLS.
//!
//! Messages are JSON, one per stream direction, at most [`MAX_MESSAGE`]
//! bytes: the control plane is not a hot path, and a peer's bad message
//! is reported by what it is.

use crate::pki::{ClusterCa, Identity, JoinToken, PkiError, Request};
use crate::tls;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;

/// The cluster protocol's version: a peer of another is refused, by name.
pub const PROTOCOL: u32 = 1;

/// The largest message either side takes.
pub const MAX_MESSAGE: usize = 1 << 20;

/// A worker asks to join.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct JoinRequest {
    /// Its [`PROTOCOL`].
    pub protocol: u32,
    /// Its weir version, for messages.
    pub version: String,
    /// The join token's secret, hex.
    pub secret: String,
    /// The name it asks for (its worker id).
    pub name: String,
    /// Its certificate request, PEM.
    pub request: String,
}

/// The coordinator's answer.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum JoinAnswer {
    /// Joined: its certificate and the CA's, PEM.
    Accepted {
        /// The worker's certificate.
        certificate: String,
        /// The cluster CA's.
        ca: String,
    },
    /// Refused, and why.
    Refused {
        /// What is wrong and what to do.
        message: String,
    },
}

/// Why joining failed, in words for the operator.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct JoinError(pub String);

impl From<PkiError> for JoinError {
    fn from(e: PkiError) -> Self {
        JoinError(e.to_string())
    }
}

/// A worker's name: what a certificate can carry and logs show plainly.
pub fn valid_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    match ok {
        true => Ok(()),
        false => Err(format!(
            "`{name}` is not a worker name: 1 to 63 lowercase letters, digits and dashes, not starting or ending with a dash"
        )),
    }
}

/// Whether a worker may go by `name`: a [`valid_name`], and not reserved
/// (the coordinator's name would let a worker pose as it; the embedded
/// worker's would be mistaken for it).
pub fn usable_name(name: &str) -> Result<(), String> {
    valid_name(name)?;
    if name == crate::pki::COORDINATOR_NAME || name.starts_with("weir-") || name == "embedded" {
        return Err(format!(
            "`{name}` is reserved (`embedded`, and names starting with `weir-`): choose another worker name"
        ));
    }
    Ok(())
}

/// The coordinator's answer to `request`: checked, then signed.
pub fn answer(ca: &ClusterCa, request: &JoinRequest) -> JoinAnswer {
    let refuse = |message: String| JoinAnswer::Refused { message };
    if request.protocol != PROTOCOL {
        return refuse(format!(
            "this coordinator speaks cluster protocol {PROTOCOL} (weir {}), the worker protocol {} (weir {}): run \
             the same version of weir on both",
            env!("CARGO_PKG_VERSION"),
            request.protocol,
            request.version
        ));
    }
    let secret = crate::pki::unhex::<16>(&request.secret, "secret").ok();
    if !secret.is_some_and(|s| ca.token().secret_matches(&s)) {
        return refuse(
            "the join token's secret is not this coordinator's: use the token in its data dir, file `join-token`"
                .into(),
        );
    }
    if let Err(e) = usable_name(&request.name) {
        return refuse(e);
    }
    match ca.issue(&request.name, &request.request) {
        Ok(certificate) => JoinAnswer::Accepted { certificate, ca: ca.cert_pem().to_owned() },
        Err(e) => refuse(e.to_string()),
    }
}

/// Reads one message of at most [`MAX_MESSAGE`] bytes (the whole stream).
pub async fn read_message<T: for<'de> Deserialize<'de>>(
    recv: &mut quinn::RecvStream,
    what: &str,
) -> Result<T, JoinError> {
    let bytes = recv.read_to_end(MAX_MESSAGE).await.map_err(|e| JoinError(format!("cannot read the {what}: {e}")))?;
    serde_json::from_slice(&bytes).map_err(|e| JoinError(format!("not a {what}: {e}")))
}

/// Writes one message and ends the stream.
pub async fn write_message<T: Serialize>(
    send: &mut quinn::SendStream,
    message: &T,
    what: &str,
) -> Result<(), JoinError> {
    let bytes = serde_json::to_vec(message).map_err(|e| JoinError(format!("cannot write the {what}: {e}")))?;
    send.write_all(&bytes).await.map_err(|e| JoinError(format!("cannot send the {what}: {e}")))?;
    send.finish().map_err(|e| JoinError(format!("cannot send the {what}: {e}")))
}

/// A joining peer has this long to send its request: an unauthenticated
/// connection holds nothing longer.
pub const JOIN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves one joining connection (one without a client certificate):
/// its first stream's request, sent within [`JOIN_DEADLINE`], gets its
/// answer.
pub async fn serve_join(ca: &ClusterCa, connection: quinn::Connection) -> Result<JoinAnswer, JoinError> {
    let asked = async {
        let (send, mut recv) =
            connection.accept_bi().await.map_err(|e| JoinError(format!("no join request came: {e}")))?;
        let request = read_message::<JoinRequest>(&mut recv, "join request").await;
        Ok::<_, JoinError>((send, request))
    };
    let Ok(asked) = tokio::time::timeout(JOIN_DEADLINE, asked).await else {
        connection.close(1u32.into(), b"no join request in time");
        return Err(JoinError(format!("no join request within {} s", JOIN_DEADLINE.as_secs())));
    };
    let (mut send, request) = asked?;
    let answer = match request {
        Ok(request) => answer(ca, &request),
        Err(e) => JoinAnswer::Refused { message: e.0 },
    };
    write_message(&mut send, &answer, "join answer").await?;
    // Until the worker has read it.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), connection.closed()).await;
    Ok(answer)
}

/// A QUIC client endpoint on an ephemeral port of `bind`'s family.
pub fn client_endpoint(bind: SocketAddr) -> Result<quinn::Endpoint, JoinError> {
    quinn::Endpoint::client(bind).map_err(|e| JoinError(format!("cannot open a UDP socket on {bind}: {e}")))
}

/// A QUIC client configuration of a rustls one.
pub fn quic_client(config: Arc<rustls::ClientConfig>) -> Result<quinn::ClientConfig, JoinError> {
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(config)
        .map_err(|e| JoinError(format!("a TLS configuration QUIC cannot use: {e}")))?;
    Ok(quinn::ClientConfig::new(Arc::new(crypto)))
}

/// A QUIC server configuration of a rustls one.
pub fn quic_server(config: Arc<rustls::ServerConfig>) -> Result<quinn::ServerConfig, JoinError> {
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(config)
        .map_err(|e| JoinError(format!("a TLS configuration QUIC cannot use: {e}")))?;
    Ok(quinn::ServerConfig::with_crypto(Arc::new(crypto)))
}

/// Joins the coordinator at `coordinator` with `token` as `name`: its
/// identity (certificate and key) and the CA certificate, DER.
pub async fn join(
    endpoint: &quinn::Endpoint,
    coordinator: SocketAddr,
    token: &JoinToken,
    name: &str,
) -> Result<(Identity, Vec<u8>), JoinError> {
    valid_name(name).map_err(JoinError)?;
    let request = Request::new(name)?;
    let config = quic_client(tls::joining(token.ca)?)?;
    let connection = endpoint
        .connect_with(config, coordinator, crate::pki::COORDINATOR_NAME)
        .map_err(|e| JoinError(format!("cannot connect to {coordinator}: {e}")))?
        .await
        .map_err(|e| JoinError(format!("cannot reach the coordinator at {coordinator}: {e}")))?;
    let (mut send, mut recv) =
        connection.open_bi().await.map_err(|e| JoinError(format!("cannot ask {coordinator} to join: {e}")))?;
    let message = JoinRequest {
        protocol: PROTOCOL,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        secret: token.secret_hex(),
        name: name.to_owned(),
        request: request.request_pem,
    };
    write_message(&mut send, &message, "join request").await?;
    let answer: JoinAnswer = read_message(&mut recv, "join answer").await?;
    connection.close(0u32.into(), b"joined");
    match answer {
        JoinAnswer::Accepted { certificate, ca } => {
            let ca_der = rustls::pki_types::pem::PemObject::from_pem_slice(ca.as_bytes())
                .map(|c: rustls::pki_types::CertificateDer<'static>| c.to_vec())
                .map_err(|e| JoinError(format!("the coordinator sent a CA that is not one: {e}")))?;
            if crate::pki::fingerprint(&ca_der) != token.ca {
                return Err(JoinError("the coordinator sent another CA than the token names".into()));
            }
            Ok((Identity { cert_pem: certificate, key_pem: request.key_pem }, ca_der))
        }
        JoinAnswer::Refused { message } => {
            Err(JoinError(format!("the coordinator at {coordinator} refused: {message}")))
        }
    }
}
