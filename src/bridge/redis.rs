//! The Redis bridge: any number of instances sharing one Redis behave as one server.
//!
//! # Keys and channels (`P` is `redis.key_prefix`)
//!
//! - `P:quiz:{quiz}` channel: statuses and student messages for the quiz's proctors. An
//!   instance subscribes only while it holds a proctor of the quiz (routing by interest), so
//!   an instance without one receives none of the quiz's traffic.
//! - `P:instance:{id}` channel: traffic for one instance (a message to an attempt it holds, a
//!   message to a quiz's students, a takeover). Each instance subscribes to its own.
//! - `P:dir:{quiz}` hash, attempt → instance: the directory of which instance holds each
//!   attempt's socket. `P:claims:{id}` set: the attempts one instance holds.
//! - `P:alive:{id}` key with a TTL, renewed by its instance; `P:instances` set of members.
//!   An instance whose key lapses is lost: the survivor that wins `P:reap:{id}` (SET NX) takes
//!   its claims still in the directory and reports them offline, once.
//!
//! Redis must be one shard (ElastiCache cluster mode off): the scripts touch several keys.
//!
//! # Outage
//!
//! Routing between local sockets never waits on Redis. While Redis is unreachable the bridge
//! reports itself down (`/readyz` 503, `invigil_bridge_up 0`) and drops cross-instance messages
//! (delivery is at most once; `seq` lets dashboards resync). The liveness tick keeps probing;
//! when Redis answers again the bridge renews its liveness key, resubscribes and restores its
//! directory entries, then traffic flows.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, OnceLock,
    },
    time::Duration,
};

use actix::prelude::*;
use futures_util::future::{BoxFuture, FutureExt};
use redis::{aio::ConnectionManager, PushInfo, PushKind, Script, Value};
use tokio::sync::{mpsc, oneshot};

use super::{Bridge, BridgeEvent, Delivery};
use crate::{
    config::RedisSettings,
    metrics::Metrics,
    protocol::{
        ids::{AttemptId, AttemptKey, InstanceId, QuizId},
        Frame,
    },
};

/// Operations written per turn, in order.
const BATCH: usize = 256;

/// Open a Redis connection that reconnects on its own and delivers pub/sub messages (RESP3
/// push) to the returned receiver, resubscribing after a reconnect.
pub fn connect(
    settings: &RedisSettings,
) -> anyhow::Result<(ConnectionManager, mpsc::UnboundedReceiver<PushInfo>)> {
    use redis::IntoConnectionInfo;
    let info = settings
        .url
        .expose()
        .into_connection_info()
        .map_err(|e| anyhow::anyhow!("redis.url is not a valid Redis URL: {e}"))?;
    let resp3 = info
        .redis_settings()
        .clone()
        .set_protocol(redis::ProtocolVersion::RESP3);
    // Statuses go out one small write at a time: no Nagle delay on them.
    let tcp = info.tcp_settings().clone().set_nodelay(true);
    let info = info.set_redis_settings(resp3).set_tcp_settings(tcp);
    let client = if settings.tls_ca_file.is_empty() {
        redis::Client::open(info)?
    } else {
        let ca = std::fs::read(&settings.tls_ca_file)
            .map_err(|e| anyhow::anyhow!("redis.tls_ca_file {}: {e}", settings.tls_ca_file))?;
        let certs = redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(ca),
        };
        redis::Client::build_with_tls(info, certs)?
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_push_sender(tx)
        .set_automatic_resubscription()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(2)))
        .set_min_delay(Duration::from_millis(100))
        .set_max_delay(Duration::from_secs(1));
    let manager = ConnectionManager::new_lazy_with_config(client, config)?;
    Ok((manager, rx))
}

/// The names of keys and channels.
#[derive(Clone)]
struct Keys {
    prefix: String,
}

impl Keys {
    fn quiz_channel(&self, quiz: &QuizId) -> String {
        format!("{}:quiz:{quiz}", self.prefix)
    }
    fn instance_channel(&self, id: &InstanceId) -> String {
        format!("{}:instance:{id}", self.prefix)
    }
    fn dir(&self, quiz: &QuizId) -> String {
        format!("{}:dir:{quiz}", self.prefix)
    }
    fn claims(&self, id: &InstanceId) -> String {
        format!("{}:claims:{id}", self.prefix)
    }
    fn alive(&self, id: &InstanceId) -> String {
        format!("{}:alive:{id}", self.prefix)
    }
    fn instances(&self) -> String {
        format!("{}:instances", self.prefix)
    }
    fn reap(&self, id: &InstanceId) -> String {
        format!("{}:reap:{id}", self.prefix)
    }
}

/// A member of a claims set: the attempt key as a JSON pair, safe for any id.
fn claim_member(key: &AttemptKey) -> String {
    serde_json::json!([key.quiz, key.attempt]).to_string()
}

fn parse_claim_member(member: &str) -> Option<AttemptKey> {
    let (quiz, attempt): (QuizId, AttemptId) = serde_json::from_str(member).ok()?;
    Some(AttemptKey { quiz, attempt })
}

/// What a message on a channel carries, after the sending instance's id.
#[derive(Debug, Clone, PartialEq)]
enum Envelope {
    Proctors {
        quiz: QuizId,
        attempt: Option<AttemptId>,
        frame: Frame,
    },
    Attempt {
        key: AttemptKey,
        frame: Frame,
    },
    QuizStudents {
        quiz: QuizId,
        frame: Frame,
    },
    Taken {
        key: AttemptKey,
    },
}

/// `["origin","kind","quiz","attempt"]\n<frame>`: a JSON header (safe for any id) and the frame
/// as it goes to the sockets, untouched.
fn encode(origin: &InstanceId, envelope: &Envelope) -> String {
    let (kind, quiz, attempt, frame) = match envelope {
        Envelope::Proctors {
            quiz,
            attempt,
            frame,
        } => (
            "p",
            quiz,
            attempt.as_ref().map_or("", |a| a.as_str()),
            &**frame,
        ),
        Envelope::Attempt { key, frame } => ("a", &key.quiz, key.attempt.as_str(), &**frame),
        Envelope::QuizStudents { quiz, frame } => ("s", quiz, "", &**frame),
        Envelope::Taken { key } => ("t", &key.quiz, key.attempt.as_str(), ""),
    };
    let header = serde_json::json!([origin, kind, quiz, attempt]);
    format!("{header}\n{frame}")
}

fn decode(payload: &[u8]) -> Option<(InstanceId, Envelope)> {
    let text = std::str::from_utf8(payload).ok()?;
    let (header, frame) = text.split_once('\n')?;
    let [origin, kind, quiz, attempt]: [String; 4] = serde_json::from_str(header).ok()?;
    let quiz = QuizId::new(quiz);
    let frame = Frame::from(frame.to_string());
    let key = || AttemptKey {
        quiz: quiz.clone(),
        attempt: AttemptId::new(&attempt),
    };
    let envelope = match kind.as_str() {
        "p" => Envelope::Proctors {
            attempt: (!attempt.is_empty()).then(|| AttemptId::new(&attempt)),
            quiz: quiz.clone(),
            frame,
        },
        "a" => Envelope::Attempt { key: key(), frame },
        "s" => Envelope::QuizStudents {
            quiz: quiz.clone(),
            frame,
        },
        "t" => Envelope::Taken { key: key() },
        _ => return None,
    };
    Some((InstanceId::new(origin), envelope))
}

/// The Lua scripts: each is one atomic step on the directory.
struct Scripts {
    claim: Script,
    claim_if_free: Script,
    release: Script,
    send_to_attempt: Script,
    quiz_students: Script,
    lost_members: Script,
    reap: Script,
}

impl Scripts {
    fn new() -> Self {
        Scripts {
            // KEYS: dir, claims(me). ARGV: attempt, me, member, prefix, taken-payload.
            claim: Script::new(
                r"local prev = redis.call('HGET', KEYS[1], ARGV[1])
                redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
                redis.call('SADD', KEYS[2], ARGV[3])
                if prev and prev ~= ARGV[2] then
                  redis.call('SREM', ARGV[4] .. ':claims:' .. prev, ARGV[3])
                  redis.call('PUBLISH', ARGV[4] .. ':instance:' .. prev, ARGV[5])
                end
                return 1",
            ),
            // After an outage: claim only if nobody live took the attempt meanwhile.
            // KEYS: dir, claims(me). ARGV: attempt, me, member, prefix.
            claim_if_free: Script::new(
                r"local owner = redis.call('HGET', KEYS[1], ARGV[1])
                if owner and owner ~= ARGV[2]
                   and redis.call('EXISTS', ARGV[4] .. ':alive:' .. owner) == 1 then
                  redis.call('SREM', KEYS[2], ARGV[3])
                  return 0
                end
                redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
                redis.call('SADD', KEYS[2], ARGV[3])
                return 1",
            ),
            // KEYS: dir, claims(me). ARGV: attempt, me, member.
            release: Script::new(
                r"if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
                  redis.call('HDEL', KEYS[1], ARGV[1])
                end
                redis.call('SREM', KEYS[2], ARGV[3])
                return 1",
            ),
            // KEYS: dir. ARGV: attempt, me, prefix, payload. Returns receivers (0: not found).
            send_to_attempt: Script::new(
                r"local owner = redis.call('HGET', KEYS[1], ARGV[1])
                if not owner or owner == ARGV[2] then return 0 end
                if redis.call('EXISTS', ARGV[3] .. ':alive:' .. owner) == 0 then return 0 end
                return redis.call('PUBLISH', ARGV[3] .. ':instance:' .. owner, ARGV[4])",
            ),
            // KEYS: dir. ARGV: me, prefix, payload.
            quiz_students: Script::new(
                r"local seen = {}
                for _, owner in ipairs(redis.call('HVALS', KEYS[1])) do
                  if owner ~= ARGV[1] and not seen[owner] then
                    seen[owner] = true
                    redis.call('PUBLISH', ARGV[2] .. ':instance:' .. owner, ARGV[3])
                  end
                end
                return 1",
            ),
            // KEYS: instances. ARGV: prefix. Members whose liveness key has lapsed.
            lost_members: Script::new(
                r"local lost = {}
                for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
                  if redis.call('EXISTS', ARGV[1] .. ':alive:' .. id) == 0 then
                    table.insert(lost, id)
                  end
                end
                return lost",
            ),
            // KEYS: claims(dead), instances. ARGV: dead, prefix. The dead instance's attempts
            // still in the directory, removed from it; attempts claimed elsewhere since are
            // left alone.
            reap: Script::new(
                r"local lost = {}
                for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do
                  local k = cjson.decode(m)
                  local dir = ARGV[2] .. ':dir:' .. k[1]
                  if redis.call('HGET', dir, k[2]) == ARGV[1] then
                    redis.call('HDEL', dir, k[2])
                    table.insert(lost, m)
                  end
                end
                redis.call('DEL', KEYS[1])
                redis.call('SREM', KEYS[2], ARGV[1])
                return lost",
            ),
        }
    }
}

/// One queued operation on Redis, in the order the registry asked for it.
enum Op {
    Publish {
        channel: String,
        payload: String,
    },
    Claim(AttemptKey),
    Release(AttemptKey),
    QuizStudents {
        quiz: QuizId,
        payload: String,
    },
    SendToAttempt {
        key: AttemptKey,
        payload: String,
        answer: oneshot::Sender<Delivery>,
    },
    Subscribe(String),
    Unsubscribe(String),
    /// Answered when every operation queued before it is done.
    Barrier(oneshot::Sender<()>),
}

/// The actor that owns the Redis connection for the bridge.
pub struct RedisBridge {
    conn: ConnectionManager,
    keys: Keys,
    settings: RedisSettings,
    metrics: Arc<Metrics>,
    up: Arc<AtomicBool>,
    scripts: Arc<Scripts>,
    pushes: Option<mpsc::UnboundedReceiver<PushInfo>>,
    me: Option<InstanceId>,
    inbox: Option<Recipient<BridgeEvent>>,
    /// Proctor sockets here per quiz; the quiz channel is subscribed while above zero.
    interest: HashMap<QuizId, usize>,
    /// Attempts whose socket is here: the truth the directory is restored from.
    claims: HashSet<AttemptKey>,
    queue: VecDeque<Op>,
    writing: bool,
    /// A liveness tick is under way.
    ticking: bool,
    /// Leaving after a drain: no more liveness renewals; answered once the key is gone.
    leaving: Option<Vec<oneshot::Sender<()>>>,
}

impl RedisBridge {
    /// Start the bridge actor; the returned handle is what the registry uses.
    pub fn start(
        settings: &RedisSettings,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<(RedisBridgeHandle, ConnectionManager)> {
        let (conn, pushes) = connect(settings)?;
        let up = Arc::new(AtomicBool::new(false));
        metrics.set_bridge_up(false);
        let actor = RedisBridge {
            conn: conn.clone(),
            keys: Keys {
                prefix: settings.key_prefix.clone(),
            },
            settings: settings.clone(),
            metrics: metrics.clone(),
            up: up.clone(),
            scripts: Arc::new(Scripts::new()),
            pushes: Some(pushes),
            me: None,
            inbox: None,
            interest: HashMap::new(),
            claims: HashSet::new(),
            queue: VecDeque::new(),
            writing: false,
            ticking: false,
            leaving: None,
        };
        let addr = actor.start();
        Ok((
            RedisBridgeHandle {
                addr,
                up,
                metrics,
                me: Arc::new(OnceLock::new()),
                keys: Keys {
                    prefix: settings.key_prefix.clone(),
                },
            },
            conn,
        ))
    }

    fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    fn set_up(&mut self, up: bool) {
        if self.up.swap(up, Ordering::Relaxed) != up {
            self.metrics.set_bridge_up(up);
            if up {
                log::info!("Redis bridge up");
            } else {
                log::warn!("Redis bridge down: cross-instance traffic paused");
            }
        }
    }

    fn enqueue(&mut self, op: Op, ctx: &mut Context<Self>) {
        let full = self.queue.len() >= self.settings.max_pending;
        match op {
            Op::SendToAttempt { answer, .. } if !self.is_up() || full => {
                let _ = answer.send(Delivery::NotFound);
                return;
            }
            Op::Publish { .. } | Op::QuizStudents { .. } if !self.is_up() || full => {
                self.metrics.bridge_dropped();
                return;
            }
            Op::Barrier(done) if !self.is_up() => {
                let _ = done.send(());
                return;
            }
            op => self.queue.push_back(op),
        }
        self.write(ctx);
    }

    /// Write the queue in order, one batch at a time.
    fn write(&mut self, ctx: &mut Context<Self>) {
        if self.writing || self.queue.is_empty() {
            return;
        }
        let Some(me) = self.me.clone() else { return };
        let n = self.queue.len().min(BATCH);
        log::debug!("writing {n} bridge operations");
        let batch: Vec<Op> = self.queue.drain(..n).collect();
        self.writing = true;
        let mut conn = self.conn.clone();
        let scripts = self.scripts.clone();
        let keys = self.keys.clone();
        let work = async move {
            // An unreachable Redis turns the bridge down; any other error (a script's) is
            // logged and the operation dropped.
            let mut unreachable = false;
            let mut check = |result: redis::RedisResult<()>| {
                if let Err(e) = result {
                    log::warn!("Redis bridge operation failed: {e}");
                    unreachable |= is_outage(&e);
                }
            };
            let mut publishes = redis::pipe();
            let mut pending_publishes = 0;
            for op in batch {
                if let Op::Publish { channel, payload } = &op {
                    publishes.publish(channel, payload).ignore();
                    pending_publishes += 1;
                    continue;
                }
                if pending_publishes > 0 {
                    check(publishes.query_async::<()>(&mut conn).await);
                    publishes = redis::pipe();
                    pending_publishes = 0;
                }
                check(run(&mut conn, &scripts, &keys, &me, op).await);
            }
            if pending_publishes > 0 {
                check(publishes.query_async::<()>(&mut conn).await);
            }
            unreachable
        };
        ctx.spawn(work.into_actor(self).map(|unreachable, act, ctx| {
            act.writing = false;
            if unreachable {
                act.set_up(false);
            }
            act.write(ctx);
        }));
    }

    /// Renew liveness, find lost instances; when Redis is back after an outage, restore.
    fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.ticking || self.leaving.is_some() {
            return;
        }
        let Some(me) = self.me.clone() else { return };
        self.ticking = true;
        let was_up = self.is_up();
        let mut conn = self.conn.clone();
        let keys = self.keys.clone();
        let scripts = self.scripts.clone();
        let ttl = self.settings.liveness_ttl_ms;
        let myself = me.clone();
        let liveness = async move {
            let me = myself;
            redis::pipe()
                .cmd("SET")
                .arg(keys.alive(&me))
                .arg(crate::now_ms())
                .arg("PX")
                .arg(ttl)
                .ignore()
                .sadd(keys.instances(), me.as_str())
                .ignore()
                .query_async::<()>(&mut conn)
                .await?;
            let lost: Vec<String> = scripts
                .lost_members
                .key(keys.instances())
                .arg(&keys.prefix)
                .invoke_async(&mut conn)
                .await?;
            Ok::<_, redis::RedisError>(lost)
        };
        ctx.spawn(liveness.into_actor(self).map(move |result, act, ctx| {
            act.ticking = false;
            if act.leaving.is_some() {
                // A renewal that raced the leave: delete the key after it.
                return act.delete_liveness(ctx);
            }
            match result {
                Ok(lost) => {
                    if !lost.is_empty() {
                        log::debug!("instances without a liveness key: {lost:?}");
                    }
                    if !was_up {
                        act.restore(ctx);
                    }
                    for instance in lost {
                        if me.as_str() != instance {
                            act.reap(InstanceId::new(instance), ctx);
                        }
                    }
                }
                Err(e) if is_outage(&e) => {
                    if was_up {
                        log::warn!("Redis unreachable: {e}");
                    }
                    act.set_up(false);
                }
                Err(e) => log::warn!("Redis liveness round failed: {e}"),
            }
        }));
    }

    /// Delete this instance's liveness key (after a drain), then answer the leavers.
    fn delete_liveness(&mut self, ctx: &mut Context<Self>) {
        let Some(me) = self.me.clone() else { return };
        let mut conn = self.conn.clone();
        let alive = self.keys.alive(&me);
        let delete = async move {
            let _: redis::RedisResult<i64> =
                redis::cmd("DEL").arg(alive).query_async(&mut conn).await;
        };
        ctx.spawn(delete.into_actor(self).map(|_, act, _| {
            for done in act.leaving.iter_mut().flat_map(|w| w.drain(..)) {
                let _ = done.send(());
            }
        }));
    }

    /// Back from an outage (or starting): resubscribe, restore the directory, then go up.
    fn restore(&mut self, ctx: &mut Context<Self>) {
        let Some(me) = self.me.clone() else { return };
        let mut conn = self.conn.clone();
        let keys = self.keys.clone();
        let scripts = self.scripts.clone();
        let mut channels: Vec<String> =
            self.interest.keys().map(|q| keys.quiz_channel(q)).collect();
        channels.push(keys.instance_channel(&me));
        let claims: Vec<AttemptKey> = self.claims.iter().cloned().collect();
        let restore = async move {
            for channel in &channels {
                conn.subscribe(channel).await?;
            }
            let mut taken = Vec::new();
            for key in claims {
                let claimed: i64 = scripts
                    .claim_if_free
                    .key(keys.dir(&key.quiz))
                    .key(keys.claims(&me))
                    .arg(key.attempt.as_str())
                    .arg(me.as_str())
                    .arg(claim_member(&key))
                    .arg(&keys.prefix)
                    .invoke_async(&mut conn)
                    .await?;
                if claimed == 0 {
                    taken.push(key);
                }
            }
            Ok::<_, redis::RedisError>(taken)
        };
        ctx.spawn(
            restore
                .into_actor(self)
                .map(|result, act, ctx| match result {
                    Ok(taken) => {
                        for key in taken {
                            act.claims.remove(&key);
                            act.deliver(BridgeEvent::AttemptTaken { key });
                        }
                        act.metrics.bridge_restored();
                        act.set_up(true);
                        act.write(ctx);
                    }
                    Err(e) => log::warn!("restoring the Redis bridge: {e}"),
                }),
        );
    }

    /// Report a lost instance's attempts, if this instance wins the right to.
    fn reap(&mut self, dead: InstanceId, ctx: &mut Context<Self>) {
        let Some(me) = self.me.clone() else { return };
        let mut conn = self.conn.clone();
        let keys = self.keys.clone();
        let scripts = self.scripts.clone();
        let ttl = self.settings.liveness_ttl_ms * 6;
        let reap = async move {
            let won: Option<String> = redis::cmd("SET")
                .arg(keys.reap(&dead))
                .arg(me.as_str())
                .arg("NX")
                .arg("PX")
                .arg(ttl)
                .query_async(&mut conn)
                .await?;
            if won.is_none() {
                return Ok(Vec::new());
            }
            let lost: Vec<String> = scripts
                .reap
                .key(keys.claims(&dead))
                .key(keys.instances())
                .arg(dead.as_str())
                .arg(&keys.prefix)
                .invoke_async(&mut conn)
                .await?;
            log::warn!(
                "instance {dead} lost: reporting its {} students offline",
                lost.len()
            );
            Ok::<_, redis::RedisError>(lost)
        };
        ctx.spawn(reap.into_actor(self).map(|result, act, _| match result {
            Ok(members) if !members.is_empty() => {
                let attempts = members
                    .iter()
                    .filter_map(|m| parse_claim_member(m))
                    .collect();
                act.deliver(BridgeEvent::AttemptsLost { attempts });
            }
            Ok(_) => {}
            Err(e) => log::warn!("reaping a lost instance: {e}"),
        }));
    }

    fn deliver(&self, event: BridgeEvent) {
        if let Some(inbox) = &self.inbox {
            inbox.do_send(event);
        }
    }

    fn on_push(&mut self, push: PushInfo) {
        match push.kind {
            PushKind::Message => {
                let Some(Value::BulkString(payload)) = push.data.get(1) else {
                    return;
                };
                let Some((origin, envelope)) = decode(payload) else {
                    log::warn!("ignoring an undecodable bridge message");
                    return;
                };
                if Some(&origin) == self.me.as_ref() {
                    return;
                }
                log::debug!("bridge message from {origin}: {envelope:?}");
                let event = match envelope {
                    Envelope::Proctors {
                        quiz,
                        attempt,
                        frame,
                    } => {
                        self.metrics.bridge_received("quiz");
                        BridgeEvent::ToProctors {
                            quiz,
                            attempt,
                            frame,
                        }
                    }
                    Envelope::Attempt { key, frame } => {
                        self.metrics.bridge_received("attempt");
                        BridgeEvent::ToAttempt { key, frame }
                    }
                    Envelope::QuizStudents { quiz, frame } => {
                        self.metrics.bridge_received("quiz_students");
                        BridgeEvent::ToQuizStudents { quiz, frame }
                    }
                    Envelope::Taken { key } => {
                        self.metrics.bridge_received("taken");
                        self.claims.remove(&key);
                        BridgeEvent::AttemptTaken { key }
                    }
                };
                self.deliver(event);
            }
            PushKind::Disconnection => self.set_up(false),
            _ => {}
        }
    }
}

/// Whether an error means Redis cannot be reached (rather than refused one command).
fn is_outage(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout()
}

/// Run one directory operation.
async fn run(
    conn: &mut ConnectionManager,
    scripts: &Scripts,
    keys: &Keys,
    me: &InstanceId,
    op: Op,
) -> redis::RedisResult<()> {
    match op {
        Op::Publish { channel, payload } => {
            let _: i64 = redis::cmd("PUBLISH")
                .arg(channel)
                .arg(payload)
                .query_async(conn)
                .await?;
        }
        Op::Claim(key) => {
            let taken = encode(me, &Envelope::Taken { key: key.clone() });
            let _: i64 = scripts
                .claim
                .key(keys.dir(&key.quiz))
                .key(keys.claims(me))
                .arg(key.attempt.as_str())
                .arg(me.as_str())
                .arg(claim_member(&key))
                .arg(&keys.prefix)
                .arg(taken)
                .invoke_async(conn)
                .await?;
        }
        Op::Release(key) => {
            let _: i64 = scripts
                .release
                .key(keys.dir(&key.quiz))
                .key(keys.claims(me))
                .arg(key.attempt.as_str())
                .arg(me.as_str())
                .arg(claim_member(&key))
                .invoke_async(conn)
                .await?;
        }
        Op::QuizStudents { quiz, payload } => {
            let _: i64 = scripts
                .quiz_students
                .key(keys.dir(&quiz))
                .arg(me.as_str())
                .arg(&keys.prefix)
                .arg(payload)
                .invoke_async(conn)
                .await?;
        }
        Op::SendToAttempt {
            key,
            payload,
            answer,
        } => {
            let receivers: redis::RedisResult<i64> = scripts
                .send_to_attempt
                .key(keys.dir(&key.quiz))
                .arg(key.attempt.as_str())
                .arg(me.as_str())
                .arg(&keys.prefix)
                .arg(payload)
                .invoke_async(conn)
                .await;
            let delivered = matches!(receivers, Ok(n) if n > 0);
            let _ = answer.send(if delivered {
                Delivery::Delivered
            } else {
                Delivery::NotFound
            });
            receivers?;
        }
        Op::Subscribe(channel) => conn.subscribe(channel).await?,
        Op::Unsubscribe(channel) => conn.unsubscribe(channel).await?,
        Op::Barrier(done) => {
            let _ = done.send(());
        }
    }
    Ok(())
}

impl Actor for RedisBridge {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Some(mut pushes) = self.pushes.take() {
            ctx.add_stream(futures_util::stream::poll_fn(move |cx| {
                pushes.poll_recv(cx)
            }));
        }
        let every = Duration::from_millis(self.settings.liveness_interval_ms);
        ctx.run_interval(every, |act, ctx| act.tick(ctx));
    }
}

impl StreamHandler<PushInfo> for RedisBridge {
    fn handle(&mut self, push: PushInfo, _: &mut Self::Context) {
        self.on_push(push);
    }

    fn finished(&mut self, _: &mut Self::Context) {
        // The connection manager is gone; nothing more will arrive.
        self.set_up(false);
    }
}

/// Commands from the handle to the actor.
#[derive(Message)]
#[rtype(result = "()")]
enum Command {
    Attach {
        instance: InstanceId,
        inbox: Recipient<BridgeEvent>,
    },
    Detach,
    /// Leave with the claims in place: the liveness key goes, so a survivor reaps them.
    Leave(oneshot::Sender<()>),
    Watch(QuizId, oneshot::Sender<()>),
    Unwatch(QuizId),
    Claim(AttemptKey),
    Release(AttemptKey),
    Op(Op),
}

impl Handler<Command> for RedisBridge {
    type Result = ();

    fn handle(&mut self, cmd: Command, ctx: &mut Self::Context) {
        match cmd {
            Command::Attach { instance, inbox } => {
                self.me = Some(instance);
                self.inbox = Some(inbox);
                self.tick(ctx);
            }
            Command::Leave(done) => {
                self.leaving.get_or_insert_with(Vec::new).push(done);
                // A renewal under way deletes the key when it ends; otherwise delete now.
                if !self.ticking {
                    self.delete_liveness(ctx);
                }
            }
            Command::Detach => {
                // Leave cleanly: release every claim and the liveness key, so no survivor
                // reports this instance's students as lost.
                let Some(me) = self.me.clone() else { return };
                let claims: Vec<AttemptKey> = self.claims.drain().collect();
                for key in claims {
                    self.enqueue(Op::Release(key), ctx);
                }
                let mut conn = self.conn.clone();
                let keys = self.keys.clone();
                let leave = async move {
                    let _: redis::RedisResult<()> = redis::pipe()
                        .del(keys.alive(&me))
                        .ignore()
                        .srem(keys.instances(), me.as_str())
                        .ignore()
                        .query_async(&mut conn)
                        .await;
                };
                ctx.spawn(leave.into_actor(self));
            }
            Command::Watch(quiz, subscribed) => {
                let n = self.interest.entry(quiz.clone()).or_default();
                *n += 1;
                if *n == 1 {
                    let channel = self.keys.quiz_channel(&quiz);
                    self.enqueue(Op::Subscribe(channel), ctx);
                }
                self.enqueue(Op::Barrier(subscribed), ctx);
            }
            Command::Unwatch(quiz) => {
                if let Some(n) = self.interest.get_mut(&quiz) {
                    *n -= 1;
                    if *n == 0 {
                        self.interest.remove(&quiz);
                        let channel = self.keys.quiz_channel(&quiz);
                        self.enqueue(Op::Unsubscribe(channel), ctx);
                    }
                }
            }
            Command::Claim(key) => {
                self.claims.insert(key.clone());
                self.enqueue(Op::Claim(key), ctx);
            }
            Command::Release(key) => {
                self.claims.remove(&key);
                self.enqueue(Op::Release(key), ctx);
            }
            Command::Op(op) => self.enqueue(op, ctx),
        }
    }
}

/// The registry's handle on the Redis bridge.
#[derive(Clone)]
pub struct RedisBridgeHandle {
    addr: Addr<RedisBridge>,
    up: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    me: Arc<OnceLock<InstanceId>>,
    keys: Keys,
}

impl RedisBridgeHandle {
    fn publish(&self, channel: String, envelope: &Envelope) {
        let Some(me) = self.me.get() else { return };
        if !self.up.load(Ordering::Relaxed) {
            self.metrics.bridge_dropped();
            return;
        }
        self.addr.do_send(Command::Op(Op::Publish {
            channel,
            payload: encode(me, envelope),
        }));
    }
}

impl Bridge for RedisBridgeHandle {
    fn attach(&self, instance: InstanceId, inbox: Recipient<BridgeEvent>) {
        let _ = self.me.set(instance.clone());
        self.addr.do_send(Command::Attach { instance, inbox });
    }

    fn detach(&self) {
        self.addr.do_send(Command::Detach);
    }

    fn watch(&self, quiz: &QuizId) -> BoxFuture<'static, ()> {
        let (subscribed, done) = oneshot::channel();
        self.addr.do_send(Command::Watch(quiz.clone(), subscribed));
        async move {
            let _ = done.await;
        }
        .boxed()
    }

    fn unwatch(&self, quiz: &QuizId) {
        self.addr.do_send(Command::Unwatch(quiz.clone()));
    }

    fn claim(&self, key: &AttemptKey) {
        self.addr.do_send(Command::Claim(key.clone()));
    }

    fn release(&self, key: &AttemptKey) {
        self.addr.do_send(Command::Release(key.clone()));
    }

    fn publish_to_proctors(&self, quiz: &QuizId, attempt: Option<&AttemptId>, frame: &Frame) {
        self.publish(
            self.keys.quiz_channel(quiz),
            &Envelope::Proctors {
                quiz: quiz.clone(),
                attempt: attempt.cloned(),
                frame: frame.clone(),
            },
        );
    }

    fn publish_to_quiz_students(&self, quiz: &QuizId, frame: &Frame) {
        let Some(me) = self.me.get() else { return };
        let payload = encode(
            me,
            &Envelope::QuizStudents {
                quiz: quiz.clone(),
                frame: frame.clone(),
            },
        );
        self.addr.do_send(Command::Op(Op::QuizStudents {
            quiz: quiz.clone(),
            payload,
        }));
    }

    fn send_to_attempt(&self, key: &AttemptKey, frame: &Frame) -> BoxFuture<'static, Delivery> {
        let (answer, answered) = oneshot::channel();
        if let Some(me) = self.me.get() {
            let payload = encode(
                me,
                &Envelope::Attempt {
                    key: key.clone(),
                    frame: frame.clone(),
                },
            );
            self.addr.do_send(Command::Op(Op::SendToAttempt {
                key: key.clone(),
                payload,
                answer,
            }));
        }
        async move { answered.await.unwrap_or(Delivery::NotFound) }.boxed()
    }

    fn is_healthy(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    fn hands_over_on_drain(&self) -> bool {
        true
    }

    fn leave_after_drain(&self) -> BoxFuture<'static, ()> {
        let (done, left) = oneshot::channel();
        self.addr.do_send(Command::Leave(done));
        async move {
            let _ = left.await;
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip_with_any_ids() {
        let me = InstanceId::new("node\n\"1\"");
        let key = AttemptKey {
            quiz: QuizId::new("q\n1"),
            attempt: AttemptId::new("a[\"x\"]"),
        };
        for envelope in [
            Envelope::Proctors {
                quiz: key.quiz.clone(),
                attempt: Some(key.attempt.clone()),
                frame: Frame::from_static("{\"type\":\"student_status\"}\n{}"),
            },
            Envelope::Proctors {
                quiz: key.quiz.clone(),
                attempt: None,
                frame: Frame::from_static("{}"),
            },
            Envelope::Attempt {
                key: key.clone(),
                frame: Frame::from_static("{}"),
            },
            Envelope::QuizStudents {
                quiz: key.quiz.clone(),
                frame: Frame::from_static("{}"),
            },
            Envelope::Taken { key: key.clone() },
        ] {
            let payload = encode(&me, &envelope);
            assert_eq!(decode(payload.as_bytes()), Some((me.clone(), envelope)));
        }
        assert_eq!(decode(b"garbage"), None);
        assert_eq!(parse_claim_member(&claim_member(&key)), Some(key));
    }
}
