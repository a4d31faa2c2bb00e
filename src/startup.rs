//! Builds the application from settings and backends, binds it, runs it and drains it.
//!
//! # Drain
//!
//! On SIGTERM or SIGINT (or [`Drainer::drain`]): `/readyz` turns 503 and new upgrades are
//! refused, so the load balancer sends no one new; after `server.drain_delay_ms` (time for the
//! load balancer to notice), every socket is closed with 1012 so its
//! client reconnects to another instance; the drain waits until the sockets are gone or
//! `server.drain_timeout_ms` passes, then stops the HTTP server and the process exits 0.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use actix::{Actor, Addr, SyncArbiter};
use actix_web::{dev::ServerHandle, web, App, HttpServer};

use crate::{
    auth::{ApiKey, Verifier},
    bridge::{redis::RedisBridge, Bridge, MemoryBridge},
    config::{RecordSettings, RedisSettings, Secret, Settings},
    http::{self, AppState, Gate},
    metrics::Metrics,
    protocol::ids::InstanceId,
    records::{
        db::{DbReader, DbUrl},
        Recorder,
    },
    registry::{Drain, HandingOver, LeaveCluster, Router, SessionRegistry},
    session::SessionContext,
    store::{DurableStore, DynamoStore, MemoryStore, RedisStore, SqlStatuses, StatusStore},
};

/// The seams' implementations an application runs on, and the metrics they report to.
pub struct Backends {
    pub store: Arc<dyn StatusStore>,
    pub bridge: Arc<dyn Bridge>,
    pub metrics: Arc<Metrics>,
    /// The record database, when records are kept.
    pub records: Option<Records>,
}

/// The persistence actors of the record database.
#[derive(Clone)]
pub struct Records {
    pub recorder: Recorder,
    pub reader: Addr<DbReader>,
}

impl Records {
    /// Start the persistence actors for `settings.url`. Must run inside an actix system.
    pub fn start(settings: &RecordSettings, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        let recorder = Recorder::start(settings, metrics)?;
        let url = DbUrl::parse(settings.url.expose())?;
        let reader = SyncArbiter::start(1, move || DbReader::new(url.clone()));
        Ok(Records { recorder, reader })
    }
}

impl Backends {
    /// One node with in-memory state: the default.
    pub fn single_node() -> Self {
        let metrics = Arc::new(Metrics::default());
        metrics.set_bridge_up(true);
        Backends {
            store: Arc::new(MemoryStore::new()),
            bridge: Arc::new(MemoryBridge::single()),
            metrics,
            records: None,
        }
    }

    /// One instance of a cluster sharing the Redis of `redis.url`. Must run inside an actix
    /// system. Connects lazily: an unreachable Redis leaves the instance up but not ready.
    pub fn clustered(settings: &RedisSettings) -> anyhow::Result<Self> {
        let metrics = Arc::new(Metrics::default());
        let (bridge, conn) = RedisBridge::start(settings, metrics.clone())?;
        Ok(Backends {
            store: Arc::new(RedisStore::new(conn, settings, metrics.clone())),
            bridge: Arc::new(bridge),
            metrics,
            records: None,
        })
    }

    /// Keep records in the database of `settings.url`.
    pub fn with_records(mut self, settings: &RecordSettings) -> anyhow::Result<Self> {
        self.records = Some(Records::start(settings, self.metrics.clone())?);
        Ok(self)
    }

    /// Keep a durable copy of the latest statuses in `durable`.
    pub fn with_durable_statuses(mut self, durable: Arc<dyn StatusStore>) -> Self {
        self.store = Arc::new(DurableStore::new(self.store, durable));
        self
    }

    /// What `settings` ask for: clustered with a Redis URL, else a single node; records unless
    /// `records.url` is empty; the durable statuses in DynamoDB if a table is set, else in
    /// the record database. Must run inside an actix system.
    pub async fn from_settings(settings: &Settings) -> anyhow::Result<Self> {
        let mut backends = if settings.redis.url.is_empty() {
            Self::single_node()
        } else {
            Self::clustered(&settings.redis)?
        };
        if !settings.records.url.is_empty() {
            backends = backends.with_records(&settings.records)?;
        }
        let durable: Option<Arc<dyn StatusStore>> = if !settings.dynamodb.table.is_empty() {
            let client = crate::store::dynamodb::client(&settings.dynamodb).await;
            Some(Arc::new(DynamoStore::new(
                client,
                &settings.dynamodb,
                backends.metrics.clone(),
            )))
        } else {
            backends.records.as_ref().map(|r| {
                Arc::new(SqlStatuses::new(r.recorder.clone(), r.reader.clone()))
                    as Arc<dyn StatusStore>
            })
        };
        Ok(match durable {
            Some(durable) => backends.with_durable_statuses(durable),
            None => backends,
        })
    }
}

/// The TLS configuration of `server.tls_cert_file` and `server.tls_key_file`, if set.
fn tls_config(
    server: &crate::config::ServerSettings,
) -> anyhow::Result<Option<rustls::ServerConfig>> {
    use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
    if server.tls_cert_file.is_empty() {
        return Ok(None);
    }
    let certs = CertificateDer::pem_file_iter(&server.tls_cert_file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("server.tls_cert_file {}: {e}", server.tls_cert_file))?;
    let key = PrivateKeyDer::from_pem_file(&server.tls_key_file)
        .map_err(|e| anyhow::anyhow!("server.tls_key_file {}: {e}", server.tls_key_file))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| anyhow::anyhow!("TLS certificate and key: {e}"))?;
    Ok(Some(config))
}

/// A bound, running server.
pub struct Application {
    addr: SocketAddr,
    instance: InstanceId,
    server: actix_web::dev::Server,
    drainer: Drainer,
}

impl Application {
    /// Bind and start serving. Must run inside an actix system. `secret` is the JWT secret
    /// (the caller decides what to do when the config has none).
    pub async fn build(
        settings: &Settings,
        secret: &Secret,
        backends: Backends,
    ) -> anyhow::Result<Self> {
        let instance = if settings.server.instance_id.is_empty() {
            InstanceId::generate()
        } else {
            InstanceId::new(&settings.server.instance_id)
        };
        let metrics = backends.metrics.clone();
        let router = Arc::new(Router::new(
            &instance,
            backends.store.clone(),
            backends.bridge.clone(),
            metrics.clone(),
            backends.records.as_ref().map(|r| r.recorder.clone()),
        ));
        let registry = SessionRegistry::new(instance.clone(), router.clone()).start();
        let draining = Arc::new(AtomicBool::new(false));
        let transports = Arc::new(AtomicUsize::new(0));
        let state = web::Data::new(AppState {
            verifier: Verifier::new(secret, &settings.auth)?,
            api_key: ApiKey::new(&settings.auth.api_key),
            metrics_token: (!settings.auth.metrics_token.is_empty())
                .then(|| ApiKey::new(&settings.auth.metrics_token)),
            registry: registry.clone(),
            store: backends.store.clone(),
            bridge: backends.bridge,
            sessions: Arc::new(SessionContext {
                instance: instance.clone(),
                limits: settings.limits.clone(),
                heartbeat: settings.heartbeat.clone(),
                metrics: metrics.clone(),
                router,
            }),
            metrics: metrics.clone(),
            draining: draining.clone(),
            transports: transports.clone(),
            records: backends.records.as_ref().map(|r| r.reader.clone()),
            gate: Gate::new(&settings.server, &settings.limits),
        });
        let drain_timeout = Duration::from_millis(settings.server.drain_timeout_ms);
        let drain_delay = Duration::from_millis(settings.server.drain_delay_ms);
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(web::PayloadConfig::new(64 * 1024))
                .configure(http::routes)
        })
        .disable_signals()
        // Statuses are small frames that must leave at once: no Nagle delay.
        .tcp_nodelay(true)
        .backlog(4096)
        .shutdown_timeout(drain_timeout.as_secs().max(1));
        if settings.server.workers > 0 {
            server = server.workers(settings.server.workers);
        }
        let server = match tls_config(&settings.server)? {
            Some(tls) => server.bind_rustls_0_23(settings.server.bind, tls)?,
            None => server.bind(settings.server.bind)?,
        };
        let addr = server
            .addrs()
            .first()
            .copied()
            .ok_or_else(|| anyhow::anyhow!("bound to no address"))?;
        let server = server.run();
        let drainer = Drainer {
            store: backends.store.clone(),
            recorder: backends.records.map(|r| r.recorder),
            draining,
            transports,
            registry,
            metrics,
            server: server.handle(),
            delay: drain_delay,
            timeout: drain_timeout,
            handover: Duration::from_millis(settings.server.drain_handover_ms),
        };
        Ok(Application {
            addr,
            instance,
            server,
            drainer,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn instance(&self) -> &InstanceId {
        &self.instance
    }

    /// A handle that drains this server.
    pub fn drainer(&self) -> Drainer {
        self.drainer.clone()
    }

    /// Serve until the server stops (after a drain).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

/// Drains one server; see the module documentation.
#[derive(Clone)]
pub struct Drainer {
    store: Arc<dyn StatusStore>,
    recorder: Option<Recorder>,
    draining: Arc<AtomicBool>,
    transports: Arc<AtomicUsize>,
    registry: Addr<SessionRegistry>,
    metrics: Arc<Metrics>,
    server: ServerHandle,
    delay: Duration,
    timeout: Duration,
    handover: Duration,
}

impl Drainer {
    pub async fn drain(&self) {
        if self.draining.swap(true, Ordering::SeqCst) {
            return; // already draining
        }
        self.metrics.set_draining(true);
        if !self.delay.is_zero() {
            log::info!(
                "draining: refusing new sockets for {:?} before closing",
                self.delay
            );
            actix_rt::time::sleep(self.delay).await;
        }
        let told = self.registry.send(Drain).await.unwrap_or(0);
        log::info!("draining: closing {told} sockets with 1012");
        let deadline = Instant::now() + self.timeout;
        // Sockets close on their own threads; a socket is gone when its actor has stopped and
        // its transport has written the close frame.
        let open = || {
            (self.metrics.open_connections().max(0) as usize)
                .max(self.transports.load(Ordering::SeqCst))
        };
        while open() > 0 && Instant::now() < deadline {
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
        let left = open();
        if left > 0 {
            log::warn!("drain timeout: {left} sockets still open; stopping anyway");
        }
        // The records and statuses of the closed sockets are written before exit.
        let left = deadline.saturating_duration_since(Instant::now());
        let recorder = self.recorder.clone();
        let flush = futures_util::future::join(self.store.flush(), async move {
            if let Some(recorder) = recorder {
                recorder.flush().await;
            }
        });
        if actix_rt::time::timeout(left.max(Duration::from_secs(1)), flush)
            .await
            .is_err()
        {
            log::warn!("drain: not every record was written in time; events past the queue wait in the spool");
        }
        if self.handover > Duration::ZERO && self.registry.send(HandingOver).await.unwrap_or(false)
        {
            log::info!(
                "draining: keeping the students' places for {:?} while they reconnect elsewhere",
                self.handover
            );
            actix_rt::time::sleep(self.handover).await;
        }
        let _ = self.registry.send(LeaveCluster).await;
        self.server.stop(true).await;
        log::info!("drained; server stopped");
    }
}
