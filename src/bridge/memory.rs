//! The in-process bridge: the default for a single node, and a way to run several servers in
//! one process (tests) that reach each other exactly as instances do through Redis.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, OnceLock},
};

use actix::Recipient;
use futures_util::future::{self, BoxFuture, FutureExt};

use super::{Bridge, BridgeEvent, Delivery};
use crate::protocol::{
    ids::{AttemptId, AttemptKey, InstanceId, QuizId},
    Frame,
};

/// What the hub knows of one attached instance.
struct Member {
    inbox: Recipient<BridgeEvent>,
    /// Watching proctor sockets per quiz.
    interest: HashMap<QuizId, usize>,
}

#[derive(Default)]
struct HubState {
    members: HashMap<InstanceId, Member>,
    /// Which instance holds each attempt's socket.
    directory: HashMap<AttemptKey, InstanceId>,
}

/// The meeting point of every [`MemoryBridge`] in one process.
#[derive(Default)]
pub struct MemoryHub {
    state: Mutex<HubState>,
}

impl MemoryHub {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A bridge for one more instance on this hub.
    pub fn bridge(self: &Arc<Self>) -> MemoryBridge {
        MemoryBridge {
            hub: self.clone(),
            me: OnceLock::new(),
        }
    }

    /// Forget `instance` as if its process had died: its claims are handed, once, to one
    /// surviving instance to report offline.
    pub fn lose(&self, instance: &InstanceId) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        state.members.remove(instance);
        let mut lost: Vec<AttemptKey> = state
            .directory
            .iter()
            .filter(|(_, owner)| *owner == instance)
            .map(|(key, _)| key.clone())
            .collect();
        state.directory.retain(|_, owner| owner != instance);
        lost.sort();
        if lost.is_empty() {
            return;
        }
        // The survivor with the smallest id reports: one and only one.
        if let Some((_, survivor)) = state.members.iter().min_by(|a, b| a.0.cmp(b.0)) {
            survivor
                .inbox
                .do_send(BridgeEvent::AttemptsLost { attempts: lost });
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut HubState) -> R) -> Option<R> {
        // A poisoned hub means a panic elsewhere; stop bridging rather than panic too.
        self.state.lock().ok().map(|mut s| f(&mut s))
    }
}

/// One instance's handle on a [`MemoryHub`].
pub struct MemoryBridge {
    hub: Arc<MemoryHub>,
    me: OnceLock<InstanceId>,
}

impl MemoryBridge {
    /// A bridge alone on its own hub: the single-node default.
    pub fn single() -> Self {
        MemoryHub::new().bridge()
    }

    fn each_other<F: FnMut(&Member)>(&self, mut f: F) {
        let Some(me) = self.me.get() else { return };
        self.hub.with(|s| {
            for (id, member) in &s.members {
                if id != me {
                    f(member);
                }
            }
        });
    }
}

impl Bridge for MemoryBridge {
    fn attach(&self, instance: InstanceId, inbox: Recipient<BridgeEvent>) {
        if self.me.set(instance.clone()).is_err() {
            log::warn!("bridge attached twice; keeping the first instance id");
            return;
        }
        self.hub.with(|s| {
            s.members.insert(
                instance,
                Member {
                    inbox,
                    interest: HashMap::new(),
                },
            )
        });
    }

    fn detach(&self) {
        let Some(me) = self.me.get() else { return };
        self.hub.with(|s| {
            s.members.remove(me);
            s.directory.retain(|_, owner| owner != me);
        });
    }

    fn watch(&self, quiz: &QuizId) -> BoxFuture<'static, ()> {
        if let Some(me) = self.me.get() {
            self.hub.with(|s| {
                if let Some(m) = s.members.get_mut(me) {
                    *m.interest.entry(quiz.clone()).or_default() += 1;
                }
            });
        }
        future::ready(()).boxed()
    }

    fn unwatch(&self, quiz: &QuizId) {
        let Some(me) = self.me.get() else { return };
        self.hub.with(|s| {
            if let Some(m) = s.members.get_mut(me) {
                if let Some(n) = m.interest.get_mut(quiz) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        m.interest.remove(quiz);
                    }
                }
            }
        });
    }

    fn claim(&self, key: &AttemptKey) {
        let Some(me) = self.me.get() else { return };
        self.hub.with(|s| {
            if let Some(previous) = s.directory.insert(key.clone(), me.clone()) {
                if &previous != me {
                    if let Some(m) = s.members.get(&previous) {
                        m.inbox
                            .do_send(BridgeEvent::AttemptTaken { key: key.clone() });
                    }
                }
            }
        });
    }

    fn release(&self, key: &AttemptKey) {
        let Some(me) = self.me.get() else { return };
        self.hub.with(|s| {
            if s.directory.get(key) == Some(me) {
                s.directory.remove(key);
            }
        });
    }

    fn publish_to_proctors(&self, quiz: &QuizId, attempt: Option<&AttemptId>, frame: &Frame) {
        self.each_other(|m| {
            if m.interest.contains_key(quiz) {
                m.inbox.do_send(BridgeEvent::ToProctors {
                    quiz: quiz.clone(),
                    attempt: attempt.cloned(),
                    frame: frame.clone(),
                });
            }
        });
    }

    fn publish_to_quiz_students(&self, quiz: &QuizId, frame: &Frame) {
        let Some(me) = self.me.get() else { return };
        self.hub.with(|s| {
            let holders: HashSet<&InstanceId> = s
                .directory
                .iter()
                .filter(|(key, owner)| &key.quiz == quiz && *owner != me)
                .map(|(_, owner)| owner)
                .collect();
            for owner in holders {
                if let Some(m) = s.members.get(owner) {
                    m.inbox.do_send(BridgeEvent::ToQuizStudents {
                        quiz: quiz.clone(),
                        frame: frame.clone(),
                    });
                }
            }
        });
    }

    fn send_to_attempt(&self, key: &AttemptKey, frame: &Frame) -> BoxFuture<'static, Delivery> {
        let me = self.me.get();
        let delivered = self.hub.with(|s| {
            let owner = s.directory.get(key).filter(|o| Some(*o) != me)?;
            let member = s.members.get(owner)?;
            member.inbox.do_send(BridgeEvent::ToAttempt {
                key: key.clone(),
                frame: frame.clone(),
            });
            Some(())
        });
        let answer = match delivered.flatten() {
            Some(()) => Delivery::Delivered,
            None => Delivery::NotFound,
        };
        future::ready(answer).boxed()
    }

    fn is_healthy(&self) -> bool {
        true
    }
}
