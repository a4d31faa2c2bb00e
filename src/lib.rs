//! invigil: a real-time proctoring server for online exams.
//!
//! Students' exam pages report their status over a WebSocket; proctors watch a live dashboard
//! of their quiz and message students. The wire contract is `PROTOCOL.md` (v1).
//!
//! # Layout
//!
//! - [`config`]: the typed settings tree, loaded from `config.toml` then the environment.
//! - [`auth`]: JWT claims and verification, token minting, the LMS API key.
//! - [`protocol`]: ids, inbound parsing and validation, outbound frames: the wire contract.
//! - [`session`]: one actor per socket ([`session::StudentSession`],
//!   [`session::ProctorSession`]) plus what they share: outbox, heartbeat, rate limit.
//! - [`registry`]: the [`registry::Router`] that routes a student's status from its socket's
//!   own thread, and the per-process [`registry::SessionRegistry`] actor that keeps the local
//!   sockets, routes proctor messages and hands cross-instance traffic to and from the bridge.
//! - [`bridge`]: the seam to other instances; the in-process implementation is the default.
//! - [`store`]: the seam holding the latest status of every attempt: in memory by default, in
//!   Redis for a cluster, with a durable copy in the record database.
//! - [`records`]: the records kept after the exam (attempts, the event log) in SQLite or
//!   PostgreSQL, written by persistence actors, with the spool that loses nothing.
//! - [`metrics`]: counters, gauges and the routing latency histogram, in Prometheus text.
//! - [`http`]: the HTTP surface: WebSocket upgrade, operations endpoints, the LMS API, the
//!   embedded web assets.
//! - [`startup`]: builds the application, binds, runs and drains it.
//! - [`cli`]: the command line (`serve`, `token`, `migrate`, `dynamodb`, `demo`).
//! - [`demo`]: simulated students for `invigil demo`.

pub mod auth;
pub mod bridge;
pub mod cli;
pub mod config;
pub mod demo;
pub mod http;
pub mod metrics;
pub mod protocol;
pub mod records;
pub mod registry;
pub mod session;
pub mod startup;
pub mod store;

/// Milliseconds since the Unix epoch, as the wire contract counts time.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        // A clock before 1970 is a broken machine; report 0 rather than panic.
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
