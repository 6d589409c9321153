//! The cluster: workers in other processes (and machines) that join the
//! coordinator over QUIC and run its jobs in their slots.
//!
//! The coordinator opens a cluster address ([`Coordinator::listen_for_workers`])
//! with the cluster CA of its data directory (`ca.pem`, `ca.key`,
//! `join-token`, made at first start). A worker with the join token first
//! joins (`weir_net::join`: it checks the coordinator by the token's CA
//! fingerprint and gets its own certificate), then connects again with
//! mutual TLS and registers its slots ([`protocol`]). From then on it is a
//! [`crate::worker::Worker`] like the embedded one ([`remote`]): job
//! masters deploy to it and watch executions that its heartbeats keep up
//! to date. A worker unheard of for [`protocol::HEARTBEAT_TIMEOUT`] is
//! lost: its executions fail, and their job masters restart them from the
//! latest checkpoint on the workers that remain.
//!
//! [`member`] is the worker's side: `weir worker`.

mod data;
pub mod member;
pub mod protocol;
mod remote;
pub(crate) mod spread;

use crate::{Coordinator, OpenError};
use protocol::{Fetch, ToCoordinator, ToWorker};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use weir_net::control;
use weir_net::join::{self, PROTOCOL};
use weir_net::pki::{COORDINATOR_NAME, ClusterCa};

/// The control connections a worker's transport carries at most (its
/// control streams, blob fetches).
const CONTROL_STREAMS: u32 = 16;

/// The registered remote workers, by name.
type Registry = Arc<Mutex<HashMap<String, Arc<remote::RemoteWorker>>>>;

/// The code a fetch's stream is reset with when the blob is not stored.
pub(crate) const NO_BLOB: u32 = 404;

/// The open cluster address: workers join here.
pub struct Cluster {
    addr: SocketAddr,
    token: String,
    endpoint: quinn::Endpoint,
    registry: Registry,
    coordinator: Arc<Coordinator>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Cluster {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The token workers join with (`None`: workers bring certificates
    /// of the operators' CA instead).
    pub fn join_token(&self) -> Option<&str> {
        (!self.token.is_empty()).then_some(self.token.as_str())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.endpoint.close(0u32.into(), b"the coordinator stops");
        // Their executions end (failed), so no job master waits on them.
        for (_, w) in crate::lock(&self.registry).drain() {
            w.lose("the coordinator stops");
        }
        self.coordinator.workers_changed();
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(std::time::Duration::from_secs(1));
        }
    }
}

/// The control connection's transport: keep-alive and the idle timeout
/// of the data plane's, and few streams (two control streams, a fetch or
/// a few at a time).
pub(crate) fn control_transport() -> Arc<quinn::TransportConfig> {
    let mut t = weir_net::channel::transport_config(CONTROL_STREAMS);
    t.max_concurrent_bidi_streams(8u32.into()).max_concurrent_uni_streams(2u32.into());
    Arc::new(t)
}

impl Coordinator {
    /// Opens the cluster address `addr` for workers, with the cluster CA
    /// in the data directory (made at first start, with its join token in
    /// `<data-dir>/join-token`). Jobs lacking slots then wait for workers
    /// to join instead of failing.
    pub fn listen_for_workers(self: &Arc<Self>, addr: SocketAddr) -> Result<Cluster, OpenError> {
        self.listen_for_workers_with(addr, None)
    }

    /// [`Coordinator::listen_for_workers`], with the operators' own
    /// certificates (`own`) instead of the cluster CA: workers then
    /// connect with certificates of the same CA, and none joins by token.
    /// The coordinator's certificate must name `weir-coordinator`.
    pub fn listen_for_workers_with(
        self: &Arc<Self>,
        addr: SocketAddr,
        own: Option<weir_net::pki::OwnCertificates>,
    ) -> Result<Cluster, OpenError> {
        let dir = &self.config.data_dir;
        let fail = |what: &str, e: &dyn std::fmt::Display| OpenError(format!("{what}: {e}"));
        let (ca, identity, ca_der) = match own {
            None => {
                let ca = Arc::new(ClusterCa::open_or_create(dir).map_err(|e| fail("the cluster CA", &e))?);
                let identity = ca.identity(COORDINATOR_NAME).map_err(|e| fail("the coordinator's certificate", &e))?;
                let der = ca.cert_der().to_vec();
                (Some(ca), identity, der)
            }
            Some(own) if !own.names.iter().any(|n| n == COORDINATOR_NAME) => {
                return Err(OpenError(format!(
                    "--cluster-cert names `{}`, and workers check the coordinator's certificate for the DNS name \
                     `{COORDINATOR_NAME}`: issue it for that name",
                    own.name
                )));
            }
            Some(own) => (None, own.identity, own.ca_der),
        };
        let tls = weir_net::tls::server(&identity, &ca_der, false).map_err(|e| fail("TLS", &e))?;
        let mut server = join::quic_server(tls).map_err(|e| fail("QUIC", &e))?;
        server.transport_config(control_transport());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("weir-cluster")
            .enable_all()
            .build()
            .map_err(|e| fail("cannot start the cluster's threads", &e))?;
        let endpoint = {
            let _in = runtime.enter();
            quinn::Endpoint::server(server, addr)
                .map_err(|e| fail(&format!("cannot listen for workers on {addr} (UDP)"), &e))?
        };
        let bound = endpoint.local_addr().map_err(|e| fail("the cluster address", &e))?;
        self.accepts_workers.store(true, std::sync::atomic::Ordering::Release);
        let token = ca.as_ref().map(|ca| ca.token().to_string()).unwrap_or_default();
        let registry = Registry::default();
        runtime.spawn(accept(self.clone(), ca, endpoint.clone(), registry.clone()));
        Ok(Cluster { addr: bound, token, endpoint, registry, coordinator: self.clone(), runtime: Some(runtime) })
    }
}

async fn accept(
    coordinator: Arc<Coordinator>,
    ca: Option<Arc<ClusterCa>>,
    endpoint: quinn::Endpoint,
    registry: Registry,
) {
    while let Some(incoming) = endpoint.accept().await {
        let (coordinator, ca, registry) = (coordinator.clone(), ca.clone(), registry.clone());
        tokio::spawn(async move {
            let Ok(connection) = incoming.await else { return };
            let peer = connection.remote_address();
            match (weir_net::tls::peer_name(&connection), &ca) {
                (None, None) => {
                    // No join without the CA's key: say so, and close.
                    let message = "this coordinator takes no join tokens (its operators bring certificates): \
                                   start the worker with --cert, --key and --ca";
                    tracing::warn!("refused a worker at {peer} that asked to join: {message}");
                    connection.close(1u32.into(), message.as_bytes());
                }
                (None, Some(ca)) => match join::serve_join(ca, connection).await {
                    Ok(join::JoinAnswer::Accepted { .. }) => tracing::info!("a worker at {peer} joined"),
                    Ok(join::JoinAnswer::Refused { message }) => {
                        tracing::warn!("refused a worker at {peer} that asked to join: {message}")
                    }
                    Err(e) => tracing::warn!("a peer at {peer} did not join: {e}"),
                },
                (Some(name), _) => {
                    if let Err(e) = member_session(&coordinator, connection, &name, &registry).await {
                        tracing::warn!("worker `{name}` at {peer}: {e}");
                    }
                }
            }
        });
    }
}

/// One registered worker's connection, from its hello to its loss.
async fn member_session(
    coordinator: &Arc<Coordinator>,
    connection: quinn::Connection,
    name: &str,
    registry: &Registry,
) -> Result<(), String> {
    let peer = connection.remote_address();
    // A certificate of the operators' CA may name anything: the same
    // rules as for a joining worker's name.
    if let Err(e) = join::usable_name(name) {
        connection.close(1u32.into(), e.as_bytes());
        return Err(format!("refused its certificate's name: {e}"));
    }
    let handshake = async {
        let mut from = connection.accept_uni().await.map_err(|e| format!("no control stream: {e}"))?;
        let hello = control::read::<ToCoordinator>(&mut from).await.map_err(|e| e.to_string())?;
        let to = connection.open_uni().await.map_err(|e| format!("cannot open a control stream: {e}"))?;
        Ok::<_, String>((from, to, hello))
    };
    let (mut from, mut to, hello) = tokio::time::timeout(join::JOIN_DEADLINE, handshake)
        .await
        .map_err(|_| format!("no hello within {} s", join::JOIN_DEADLINE.as_secs()))??;
    let refusal = match hello {
        Some(ToCoordinator::Hello { protocol, .. }) if protocol != PROTOCOL => Some(format!(
            "this coordinator speaks cluster protocol {PROTOCOL} (weir {}), the worker {protocol}: run the same \
             version of weir on both",
            env!("CARGO_PKG_VERSION")
        )),
        Some(ToCoordinator::Hello { slots: 0, .. }) => Some("a worker needs at least one slot (--slots)".into()),
        Some(ToCoordinator::Hello { slots, .. }) if slots > protocol::MAX_SLOTS => {
            Some(format!("{slots} slots is more than one worker may offer ({}): lower --slots", protocol::MAX_SLOTS))
        }
        Some(ToCoordinator::Hello { .. }) => None,
        _ => Some("the first message must be a hello".into()),
    };
    if let Some(message) = refusal {
        let _ = control::write(&mut to, &ToWorker::Refused { message: message.clone() }).await;
        let _ = to.finish();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), connection.closed()).await;
        return Err(format!("refused: {message}"));
    }
    let Some(ToCoordinator::Hello { slots, data_port, .. }) = hello else { unreachable!("refused above") };
    let data = SocketAddr::new(peer.ip(), data_port);
    control::write(&mut to, &ToWorker::Welcome).await.map_err(|e| e.to_string())?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<ToWorker>(256);
    let worker = Arc::new(remote::RemoteWorker::new(name.to_owned(), peer.to_string(), slots, data, tx.clone()));
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if control::write(&mut to, &m).await.is_err() {
                break;
            }
        }
    });
    let pinger = tokio::spawn(async move {
        let mut tick = tokio::time::interval(protocol::HEARTBEAT);
        loop {
            tick.tick().await;
            if tx.send(ToWorker::Ping).await.is_err() {
                return;
            }
        }
    });
    let blobs = tokio::spawn(serve_blobs(coordinator.clone(), connection.clone()));
    // Its certificate proves a connection of the same name is the same
    // worker, come back: the old connection's registration gives way.
    let old = crate::lock(registry).insert(name.to_owned(), worker.clone());
    if let Some(old) = old {
        old.lose("the worker connected again");
    }
    coordinator.add_worker(worker.clone());
    tracing::info!("worker `{name}` at {peer} registered {slots} slots");
    let reason = loop {
        match tokio::time::timeout(protocol::HEARTBEAT_TIMEOUT, control::read::<ToCoordinator>(&mut from)).await {
            Err(_) => break format!("no heartbeat for {} s", protocol::HEARTBEAT_TIMEOUT.as_secs()),
            Ok(Err(e)) => break format!("its control stream failed: {e}"),
            Ok(Ok(None)) => break "it closed its control stream".to_owned(),
            Ok(Ok(Some(m))) => {
                if let Err(e) = worker.received(m) {
                    break e;
                }
            }
        }
    };
    {
        let mut registry = crate::lock(registry);
        if registry.get(name).is_some_and(|w| Arc::ptr_eq(w, &worker)) {
            registry.remove(name);
        }
    }
    worker.lose(&reason);
    coordinator.workers_changed();
    pinger.abort();
    writer.abort();
    blobs.abort();
    connection.close(2u32.into(), reason.as_bytes());
    Err(format!("lost: {reason}"))
}

/// Answers a worker's component fetches, one stream each.
async fn serve_blobs(coordinator: Arc<Coordinator>, connection: quinn::Connection) {
    while let Ok((mut send, mut recv)) = connection.accept_bi().await {
        let coordinator = coordinator.clone();
        tokio::spawn(async move {
            let Ok(fetch) = join::read_message::<Fetch>(&mut recv, "fetch").await else { return };
            let Some(path) = coordinator.blob_path(&fetch.sha256) else {
                let _ = send.reset(NO_BLOB.into());
                return;
            };
            let Ok(Ok(bytes)) = tokio::task::spawn_blocking(move || std::fs::read(path)).await else {
                let _ = send.reset(1u32.into());
                return;
            };
            if send.write_all(&bytes).await.is_ok() {
                let _ = send.finish();
            }
        });
    }
}
