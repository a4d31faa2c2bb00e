//! The server's metrics, kept in atomics and rendered in the Prometheus text format.
//!
//! One [`Metrics`] per application (not a global), so several servers in one test process
//! keep their own counts.

use std::{
    fmt::Write,
    sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed},
    time::Duration,
};

use crate::{auth::Role, protocol::ErrorCode};

/// Wire types of client messages, for `invigil_messages_in_total{type}`.
pub const IN_TYPES: [&str; 7] = [
    "message_to_master",
    "message_to_proctor",
    "subscribe",
    "unsubscribe",
    "message_to_student",
    "ping",
    "invalid",
];

/// Wire types of server messages, for `invigil_messages_out_total{type}`.
pub const OUT_TYPES: [&str; 8] = [
    "welcome",
    "ack",
    "error",
    "pong",
    "snapshot",
    "student_status",
    "student_message",
    "proctor_message",
];

/// Close codes the server sends, for `invigil_closes_total{code}`.
pub const CLOSE_CODES: [u16; 7] = [1000, 1002, 1009, 1012, 1013, 4008, 4009];

/// Why an upgrade was refused, for `invigil_handshakes_refused_total{reason}`.
pub const REFUSALS: [&str; 6] = ["auth", "draining", "capacity", "per_ip", "rate", "origin"];

/// Upper bounds (seconds) of the routing latency histogram.
const LATENCY_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// A latency histogram with fixed buckets.
#[derive(Default)]
struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_nanos
            .fetch_add(d.as_nanos().min(u64::MAX as u128) as u64, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str) {
        let mut cumulative = 0;
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&self.buckets) {
            cumulative += bucket.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_nanos.load(Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// Every metric of one server.
#[derive(Default)]
pub struct Metrics {
    connections: [AtomicI64; 2],
    connections_opened: [AtomicU64; 2],
    handshakes_refused: [AtomicU64; REFUSALS.len()],
    messages_in: [AtomicU64; IN_TYPES.len()],
    messages_out: [AtomicU64; OUT_TYPES.len()],
    errors: [AtomicU64; ErrorCode::ALL.len()],
    closes: [AtomicU64; CLOSE_CODES.len()],
    coalesced: AtomicU64,
    routing: Histogram,
    draining: AtomicI64,
    bridge_up: AtomicI64,
    bridge_received: [AtomicU64; BRIDGE_KINDS.len()],
    bridge_dropped: AtomicU64,
    bridge_restores: AtomicU64,
    store_pending: AtomicI64,
    store_write_errors: AtomicU64,
    records_queued: AtomicI64,
    records_spool: AtomicI64,
    records_spooled: AtomicU64,
    records_written: AtomicU64,
    record_statuses_written: AtomicU64,
    record_write_failures: AtomicU64,
    record_write_nanos: AtomicU64,
    record_writes: AtomicU64,
    dynamo_items: AtomicU64,
    dynamo_requests: AtomicU64,
    dynamo_failures: AtomicU64,
    dynamo_nanos: AtomicU64,
}

/// Kinds of cross-instance messages, for `invigil_bridge_received_total{kind}`.
pub const BRIDGE_KINDS: [&str; 5] = ["quiz", "attempt", "quiz_students", "taken", "other"];

fn role_index(role: Role) -> usize {
    match role {
        Role::Student => 0,
        Role::Proctor => 1,
    }
}

fn bump(counters: &[AtomicU64], names: &[&str], name: &str) {
    if let Some(i) = names.iter().position(|n| *n == name) {
        counters[i].fetch_add(1, Relaxed);
    }
}

impl Metrics {
    pub fn connection_opened(&self, role: Role) {
        self.connections[role_index(role)].fetch_add(1, Relaxed);
        self.connections_opened[role_index(role)].fetch_add(1, Relaxed);
    }

    pub fn connection_closed(&self, role: Role) {
        self.connections[role_index(role)].fetch_sub(1, Relaxed);
    }

    /// Sockets open now, students and proctors together.
    pub fn open_connections(&self) -> i64 {
        self.connections.iter().map(|c| c.load(Relaxed)).sum()
    }

    pub fn handshake_refused(&self, reason: &str) {
        bump(&self.handshakes_refused, &REFUSALS, reason);
    }

    pub fn message_in(&self, kind: &str) {
        bump(&self.messages_in, &IN_TYPES, kind);
    }

    pub fn message_out(&self, kind: &str) {
        bump(&self.messages_out, &OUT_TYPES, kind);
    }

    pub fn error(&self, code: ErrorCode) {
        if let Some(i) = ErrorCode::ALL.iter().position(|c| *c == code) {
            self.errors[i].fetch_add(1, Relaxed);
        }
    }

    pub fn close(&self, code: u16) {
        if let Some(i) = CLOSE_CODES.iter().position(|c| *c == code) {
            self.closes[i].fetch_add(1, Relaxed);
        }
    }

    /// A status waiting for a slow socket was replaced by a newer one of the same attempt.
    pub fn coalesced(&self) {
        self.coalesced.fetch_add(1, Relaxed);
    }

    /// Time from a status arriving on its socket to its hand-off to every local proctor.
    pub fn routed(&self, latency: Duration) {
        self.routing.observe(latency);
    }

    pub fn set_draining(&self, draining: bool) {
        self.draining.store(draining as i64, Relaxed);
    }

    /// Whether cross-instance traffic flows.
    pub fn set_bridge_up(&self, up: bool) {
        self.bridge_up.store(up as i64, Relaxed);
    }

    /// A message from another instance arrived through the bridge.
    pub fn bridge_received(&self, kind: &str) {
        let i = BRIDGE_KINDS
            .iter()
            .position(|k| *k == kind)
            .unwrap_or(BRIDGE_KINDS.len() - 1);
        self.bridge_received[i].fetch_add(1, Relaxed);
    }

    /// A cross-instance message was dropped (the bridge is down or its queue is full).
    pub fn bridge_dropped(&self) {
        self.bridge_dropped.fetch_add(1, Relaxed);
    }

    /// The bridge came back and restored its subscriptions, directory entries and liveness.
    pub fn bridge_restored(&self) {
        self.bridge_restores.fetch_add(1, Relaxed);
    }

    /// Events waiting in the record queue and in the spool file.
    pub fn set_records_waiting(&self, queued: usize, spooled: usize) {
        self.records_queued.store(queued as i64, Relaxed);
        self.records_spool.store(spooled as i64, Relaxed);
    }

    /// Events that went to the spool file.
    pub fn records_spooled(&self, n: usize) {
        self.records_spooled.fetch_add(n as u64, Relaxed);
    }

    /// A record transaction committed: new events, statuses, and how long it took.
    pub fn records_written(&self, events: usize, statuses: usize, took: Duration) {
        self.records_written.fetch_add(events as u64, Relaxed);
        self.record_statuses_written
            .fetch_add(statuses as u64, Relaxed);
        self.record_writes.fetch_add(1, Relaxed);
        self.record_write_nanos
            .fetch_add(took.as_nanos().min(u64::MAX as u128) as u64, Relaxed);
    }

    /// A record transaction failed (it is retried).
    pub fn record_write_failed(&self) {
        self.record_write_failures.fetch_add(1, Relaxed);
    }

    /// A BatchWriteItem request wrote `items` statuses to DynamoDB.
    pub fn dynamo_written(&self, items: usize, took: Duration) {
        self.dynamo_items.fetch_add(items as u64, Relaxed);
        self.dynamo_requests.fetch_add(1, Relaxed);
        self.dynamo_nanos
            .fetch_add(took.as_nanos().min(u64::MAX as u128) as u64, Relaxed);
    }

    /// A DynamoDB request failed (it is retried).
    pub fn dynamo_failed(&self) {
        self.dynamo_failures.fetch_add(1, Relaxed);
    }

    /// Statuses waiting to be written to the shared store.
    pub fn set_store_pending(&self, n: usize) {
        self.store_pending.store(n as i64, Relaxed);
    }

    /// A write to the shared store failed (it is retried).
    pub fn store_write_error(&self) {
        self.store_write_errors.fetch_add(1, Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let roles = [Role::Student, Role::Proctor];
        out.push_str("# HELP invigil_connections WebSocket connections open now.\n# TYPE invigil_connections gauge\n");
        for role in roles {
            let v = self.connections[role_index(role)].load(Relaxed);
            let _ = writeln!(out, "invigil_connections{{role=\"{}\"}} {v}", role.as_str());
        }
        out.push_str("# HELP invigil_connections_opened_total WebSocket connections accepted.\n# TYPE invigil_connections_opened_total counter\n");
        for role in roles {
            let v = self.connections_opened[role_index(role)].load(Relaxed);
            let _ = writeln!(
                out,
                "invigil_connections_opened_total{{role=\"{}\"}} {v}",
                role.as_str()
            );
        }
        out.push_str("# HELP invigil_handshakes_refused_total Upgrades refused, by reason.\n# TYPE invigil_handshakes_refused_total counter\n");
        for (reason, c) in REFUSALS.iter().zip(&self.handshakes_refused) {
            let _ = writeln!(
                out,
                "invigil_handshakes_refused_total{{reason=\"{reason}\"}} {}",
                c.load(Relaxed)
            );
        }
        out.push_str("# HELP invigil_messages_in_total Client messages received, by type.\n# TYPE invigil_messages_in_total counter\n");
        for (name, c) in IN_TYPES.iter().zip(&self.messages_in) {
            let _ = writeln!(
                out,
                "invigil_messages_in_total{{type=\"{name}\"}} {}",
                c.load(Relaxed)
            );
        }
        out.push_str("# HELP invigil_messages_out_total Server messages queued to sockets, by type.\n# TYPE invigil_messages_out_total counter\n");
        for (name, c) in OUT_TYPES.iter().zip(&self.messages_out) {
            let _ = writeln!(
                out,
                "invigil_messages_out_total{{type=\"{name}\"}} {}",
                c.load(Relaxed)
            );
        }
        out.push_str("# HELP invigil_errors_total Error messages sent to clients, by code.\n# TYPE invigil_errors_total counter\n");
        for (code, c) in ErrorCode::ALL.iter().zip(&self.errors) {
            let _ = writeln!(
                out,
                "invigil_errors_total{{code=\"{}\"}} {}",
                code.as_str(),
                c.load(Relaxed)
            );
        }
        out.push_str("# HELP invigil_closes_total Sockets closed by the server, by close code.\n# TYPE invigil_closes_total counter\n");
        for (code, c) in CLOSE_CODES.iter().zip(&self.closes) {
            let _ = writeln!(
                out,
                "invigil_closes_total{{code=\"{code}\"}} {}",
                c.load(Relaxed)
            );
        }
        let _ = writeln!(out, "# HELP invigil_statuses_coalesced_total Statuses dropped for a slow socket because a newer one of the same attempt replaced them.\n# TYPE invigil_statuses_coalesced_total counter\ninvigil_statuses_coalesced_total {}", self.coalesced.load(Relaxed));
        out.push_str("# HELP invigil_routing_latency_seconds From a status on its socket to its hand-off to the local proctors.\n# TYPE invigil_routing_latency_seconds histogram\n");
        self.routing
            .render(&mut out, "invigil_routing_latency_seconds");
        let _ = writeln!(out, "# HELP invigil_draining 1 while the server drains.\n# TYPE invigil_draining gauge\ninvigil_draining {}", self.draining.load(Relaxed));
        let _ = writeln!(out, "# HELP invigil_bridge_up 1 while cross-instance traffic flows (always 1 on a single node).\n# TYPE invigil_bridge_up gauge\ninvigil_bridge_up {}", self.bridge_up.load(Relaxed));
        out.push_str("# HELP invigil_bridge_received_total Messages received from other instances, by kind.\n# TYPE invigil_bridge_received_total counter\n");
        for (kind, c) in BRIDGE_KINDS.iter().zip(&self.bridge_received) {
            let _ = writeln!(
                out,
                "invigil_bridge_received_total{{kind=\"{kind}\"}} {}",
                c.load(Relaxed)
            );
        }
        let _ = writeln!(out, "# HELP invigil_bridge_dropped_total Cross-instance messages dropped while the bridge was down or full.\n# TYPE invigil_bridge_dropped_total counter\ninvigil_bridge_dropped_total {}", self.bridge_dropped.load(Relaxed));
        let _ = writeln!(out, "# HELP invigil_bridge_restores_total Times the bridge reconnected and restored its state.\n# TYPE invigil_bridge_restores_total counter\ninvigil_bridge_restores_total {}", self.bridge_restores.load(Relaxed));
        let _ = writeln!(out, "# HELP invigil_store_pending Statuses waiting to be written to the shared store.\n# TYPE invigil_store_pending gauge\ninvigil_store_pending {}", self.store_pending.load(Relaxed));
        let _ = writeln!(out, "# HELP invigil_records_queued Events waiting in memory for the record database.\n# TYPE invigil_records_queued gauge\ninvigil_records_queued {}", self.records_queued.load(Relaxed));
        let _ = writeln!(out, "# HELP invigil_records_spool Events waiting in the spool file.\n# TYPE invigil_records_spool gauge\ninvigil_records_spool {}", self.records_spool.load(Relaxed));
        let _ = writeln!(out, "# HELP invigil_records_spooled_total Events that went to the spool file.\n# TYPE invigil_records_spooled_total counter\ninvigil_records_spooled_total {}", self.records_spooled.load(Relaxed));
        let _ = writeln!(out, "# HELP invigil_records_written_total Events written to the record database.\n# TYPE invigil_records_written_total counter\ninvigil_records_written_total {}", self.records_written.load(Relaxed));
        let _ = writeln!(out, "# HELP invigil_record_statuses_written_total Latest statuses written to the record database.\n# TYPE invigil_record_statuses_written_total counter\ninvigil_record_statuses_written_total {}", self.record_statuses_written.load(Relaxed));
        let _ = writeln!(out, "# HELP invigil_record_write_failures_total Failed record transactions (retried).\n# TYPE invigil_record_write_failures_total counter\ninvigil_record_write_failures_total {}", self.record_write_failures.load(Relaxed));
        let _ = writeln!(out, "# HELP invigil_record_write_seconds Time of record transactions.\n# TYPE invigil_record_write_seconds summary\ninvigil_record_write_seconds_sum {}\ninvigil_record_write_seconds_count {}", self.record_write_nanos.load(Relaxed) as f64 / 1e9, self.record_writes.load(Relaxed));
        let _ = writeln!(out, "# HELP invigil_dynamodb_items_written_total Statuses written to DynamoDB (each one write unit).\n# TYPE invigil_dynamodb_items_written_total counter\ninvigil_dynamodb_items_written_total {}", self.dynamo_items.load(Relaxed));
        let _ = writeln!(out, "# HELP invigil_dynamodb_write_failures_total Failed DynamoDB requests (retried).\n# TYPE invigil_dynamodb_write_failures_total counter\ninvigil_dynamodb_write_failures_total {}", self.dynamo_failures.load(Relaxed));
        let _ = writeln!(out, "# HELP invigil_dynamodb_write_seconds Time of BatchWriteItem requests.\n# TYPE invigil_dynamodb_write_seconds summary\ninvigil_dynamodb_write_seconds_sum {}\ninvigil_dynamodb_write_seconds_count {}", self.dynamo_nanos.load(Relaxed) as f64 / 1e9, self.dynamo_requests.load(Relaxed));
        let _ = writeln!(out, "# HELP invigil_store_write_errors_total Failed writes to the shared store (retried).\n# TYPE invigil_store_write_errors_total counter\ninvigil_store_write_errors_total {}", self.store_write_errors.load(Relaxed));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_and_cumulative_buckets() {
        let m = Metrics::default();
        m.connection_opened(Role::Student);
        m.message_in("subscribe");
        m.error(ErrorCode::Forbidden);
        m.close(4009);
        m.routed(Duration::from_micros(300));
        m.routed(Duration::from_millis(3));
        let text = m.render();
        assert!(text.contains("invigil_connections{role=\"student\"} 1"));
        assert!(text.contains("invigil_messages_in_total{type=\"subscribe\"} 1"));
        assert!(text.contains("invigil_errors_total{code=\"forbidden\"} 1"));
        assert!(text.contains("invigil_closes_total{code=\"4009\"} 1"));
        assert!(text.contains("invigil_routing_latency_seconds_bucket{le=\"0.0005\"} 1"));
        assert!(text.contains("invigil_routing_latency_seconds_bucket{le=\"0.005\"} 2"));
        assert!(text.contains("invigil_routing_latency_seconds_count 2"));
    }
}
