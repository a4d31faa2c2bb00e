//! The bridge seam: traffic between instances of one cluster.
//!
//! # Contract
//!
//! Each instance's [`SessionRegistry`](crate::registry::SessionRegistry) attaches once and
//! then calls the bridge from its handlers; every method returns at once (an implementation
//! that talks to a network queues the work). Inbound traffic arrives at the registry as
//! [`BridgeEvent`]s.
//!
//! - **By interest.** A frame published for a quiz reaches the instances that
//!   [`watch`](Bridge::watch) the quiz (hold one of its proctors), and no others. The
//!   publishing instance does not get its own frame back: it has already delivered it locally.
//! - **By directory.** An instance [`claim`](Bridge::claim)s each attempt whose socket it holds.
//!   [`send_to_attempt`](Bridge::send_to_attempt) reaches the one instance holding the claim. A
//!   claim moved to a new instance tells the old one ([`BridgeEvent::AttemptTaken`]) to close its
//!   socket without reporting the attempt offline.
//! - **Loss.** When an instance is lost without releasing its claims, exactly one survivor is
//!   told ([`BridgeEvent::AttemptsLost`]) and reports those attempts offline (`instance_lost`).
//!   A drained instance leaves the same way ([`Bridge::leave_after_drain`]), so its students
//!   who reconnect elsewhere are never shown offline and the others are, once.
//! - **Delivery** is at most once and in order per publishing instance; `seq` lets receivers
//!   drop anything stale.
//!
//! [`memory::MemoryBridge`] is the default: one node, or several servers in one process
//! sharing a [`memory::MemoryHub`].

pub mod memory;
pub mod redis;

use actix::{Message, Recipient};
use futures_util::future::BoxFuture;

use crate::protocol::{
    ids::{AttemptId, AttemptKey, InstanceId, QuizId},
    Frame,
};

pub use memory::{MemoryBridge, MemoryHub};

/// Whether a message for one attempt found its socket somewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Delivered,
    NotFound,
}

/// Traffic from other instances, for this instance's registry.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub enum BridgeEvent {
    /// A frame for the local proctors of `quiz`; `attempt` names the attempt of a status, so a
    /// slow socket can drop a superseded one.
    ToProctors {
        quiz: QuizId,
        attempt: Option<AttemptId>,
        frame: Frame,
    },
    /// A frame for the socket of an attempt this instance claims.
    ToAttempt { key: AttemptKey, frame: Frame },
    /// A frame for every local student socket of `quiz`.
    ToQuizStudents { quiz: QuizId, frame: Frame },
    /// Another instance took over this attempt: close the local socket (4009) quietly.
    AttemptTaken { key: AttemptKey },
    /// These attempts' instance was lost: report each offline with reason `instance_lost`.
    AttemptsLost { attempts: Vec<AttemptKey> },
}

/// The cross-instance transport, as the registry sees it.
pub trait Bridge: Send + Sync + 'static {
    /// Join the cluster as `instance`; inbound traffic goes to `inbox`.
    fn attach(&self, instance: InstanceId, inbox: Recipient<BridgeEvent>);

    /// Leave the cluster cleanly, releasing this instance's claims and interests.
    fn detach(&self);

    /// This instance holds a proctor of `quiz` (counted: one call per watching socket). The
    /// future resolves once the quiz's traffic from other instances flows here (or at once if
    /// the bridge is down), so a snapshot read afterwards misses nothing.
    fn watch(&self, quiz: &QuizId) -> BoxFuture<'static, ()>;

    /// A proctor of `quiz` on this instance went away.
    fn unwatch(&self, quiz: &QuizId);

    /// This instance now holds the socket of `key`.
    fn claim(&self, key: &AttemptKey);

    /// This instance no longer holds the socket of `key`.
    fn release(&self, key: &AttemptKey);

    /// Send `frame` to the proctors of `quiz` on the other instances.
    fn publish_to_proctors(&self, quiz: &QuizId, attempt: Option<&AttemptId>, frame: &Frame);

    /// Send `frame` to every student socket of `quiz` on the other instances.
    fn publish_to_quiz_students(&self, quiz: &QuizId, frame: &Frame);

    /// Send `frame` to the socket of `key` on whichever other instance holds it.
    fn send_to_attempt(&self, key: &AttemptKey, frame: &Frame) -> BoxFuture<'static, Delivery>;

    /// Whether cross-instance traffic flows (for `/readyz`).
    fn is_healthy(&self) -> bool;

    /// Whether the sockets of a draining instance are handed over to the cluster: their
    /// attempts are not reported offline at once (the clients reconnect elsewhere); the
    /// instance leaves with its claims in place and a survivor reports, once, those not
    /// reconnected meanwhile (`instance_lost`). False where no other instance would report.
    fn hands_over_on_drain(&self) -> bool {
        false
    }

    /// Leave after a drain: with hand-over, go without releasing the claims. Resolves once
    /// the cluster can see this instance gone.
    fn leave_after_drain(&self) -> BoxFuture<'static, ()> {
        self.detach();
        Box::pin(async {})
    }
}
