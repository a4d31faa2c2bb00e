//! The persistence actor: a bounded queue of events in front of the database writer, the
//! spool past its bound, retries with backoff, and the latest statuses, written by the policy
//! of [`Coalescer`] (`records.status_interval_ms`).

use std::{
    collections::VecDeque,
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use actix::prelude::*;
use tokio::sync::oneshot;

use super::{
    db::{DbError, DbUrl, DbWriter, WriteBatch},
    journal::{self, Journal},
    spool::Spool,
    RecordEvent,
};
use crate::{
    config::RecordSettings, metrics::Metrics, protocol::status::StatusRecord,
    store::coalesce::Coalescer,
};

/// Longest wait between retries of a failed write.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Where the batch being written came from.
enum Source {
    Queue(usize),
    Spool { bytes: u64, lines: usize },
}

pub struct RecordQueue {
    writer: Addr<DbWriter>,
    settings: RecordSettings,
    metrics: Arc<Metrics>,
    /// Events waiting for the database, each with its journal number.
    queue: VecDeque<(u64, RecordEvent)>,
    journal: Arc<Mutex<Journal>>,
    spool: Spool,
    /// Events go to the spool (not the queue) until the spool is empty again, so they keep
    /// their order.
    spooling: bool,
    statuses: Coalescer,
    writing: bool,
    /// When the last write started, and whether a pump is set for when the interval passes.
    last_write: Option<Instant>,
    wake_set: bool,
    backoff: Duration,
    /// Waiting after a failure: no write until the backoff passes.
    resting: bool,
    flushes: Vec<oneshot::Sender<()>>,
}

impl RecordQueue {
    fn add_status(&mut self, record: Arc<StatusRecord>, ctx: &mut Context<Self>) {
        if self.statuses.offer(record, Instant::now()) {
            self.pump(ctx);
        }
    }

    fn add_event(&mut self, event: RecordEvent, number: u64, ctx: &mut Context<Self>) {
        if !self.spooling && self.queue.len() < self.settings.queue_size {
            self.queue.push_back((number, event));
        } else {
            if !self.spooling {
                log::warn!(
                    "record queue full ({} events): spooling to {}",
                    self.queue.len(),
                    self.settings.spool_path
                );
            }
            self.spooling = true;
            match self.spool.append(std::slice::from_ref(&event)) {
                Ok(()) => {
                    self.metrics.records_spooled(1);
                    self.settle([number]);
                }
                Err(e) => {
                    // The disk refused too: keep the event in memory rather than lose it.
                    log::error!(
                        "spool {}: {e}; keeping the event in memory",
                        self.settings.spool_path
                    );
                    self.queue.push_back((number, event));
                }
            }
        }
        self.metrics
            .set_records_waiting(self.queue.len(), self.spool.waiting());
        self.pump(ctx);
    }

    /// Events now in the database or the spool leave the journal.
    fn settle(&self, numbers: impl IntoIterator<Item = u64>) {
        let mut journal = self.journal.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = journal.settle(numbers) {
            log::error!("journal {}: {e}", journal.path().display());
        }
    }

    fn idle(&self) -> bool {
        !self.writing && self.queue.is_empty() && self.spool.is_empty() && self.statuses.is_empty()
    }

    /// Start the next write if none is under way.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.writing || self.resting {
            return;
        }
        let flushing = !self.flushes.is_empty();
        let batch = self.settings.batch_size;
        // Group commit: within the interval of the last write, wait for it to pass (unless a
        // full batch waits or a flush is asked for); everything that came meanwhile goes in one
        // transaction.
        let interval = Duration::from_millis(self.settings.write_interval_ms);
        let since = self.last_write.map(|at| at.elapsed());
        if let Some(since) = since.filter(|s| *s < interval) {
            if !flushing && self.queue.len() < batch {
                if !self.wake_set {
                    self.wake_set = true;
                    ctx.run_later(interval - since, |act, ctx| {
                        act.wake_set = false;
                        act.pump(ctx);
                    });
                }
                return;
            }
        }
        let statuses = self.statuses.take_due(Instant::now(), flushing, batch);
        let (events, source) = if !self.queue.is_empty() {
            let n = self.queue.len().min(batch);
            let events: Vec<RecordEvent> =
                self.queue.iter().take(n).map(|(_, e)| e.clone()).collect();
            (events, Source::Queue(n))
        } else if !self.spool.is_empty() {
            match self.spool.peek(batch) {
                Ok((events, bytes, lines)) => (events, Source::Spool { bytes, lines }),
                Err(e) => {
                    log::error!("reading the spool {}: {e}", self.settings.spool_path);
                    (Vec::new(), Source::Queue(0))
                }
            }
        } else {
            (Vec::new(), Source::Queue(0))
        };
        if events.is_empty() && statuses.is_empty() && matches!(source, Source::Queue(0)) {
            if self.idle() {
                for done in self.flushes.drain(..) {
                    let _ = done.send(());
                }
            }
            return;
        }
        self.writing = true;
        self.last_write = Some(Instant::now());
        let write = self.writer.send(WriteBatch {
            events: Arc::new(events),
            statuses: statuses.clone(),
        });
        ctx.spawn(write.into_actor(self).map(move |result, act, ctx| {
            act.writing = false;
            let result = result.unwrap_or_else(|e| Err(DbError(format!("writer gone: {e}"))));
            act.written_back(result, source, statuses, ctx);
        }));
    }

    fn written_back(
        &mut self,
        result: Result<(usize, Duration), DbError>,
        source: Source,
        statuses: Vec<Arc<StatusRecord>>,
        ctx: &mut Context<Self>,
    ) {
        match result {
            Ok((added, took)) => {
                self.metrics.records_written(added, statuses.len(), took);
                self.backoff = Duration::from_millis(100);
                match source {
                    Source::Queue(n) => {
                        let numbers: Vec<u64> = self.queue.drain(..n).map(|(n, _)| n).collect();
                        self.settle(numbers);
                    }
                    Source::Spool { bytes, lines } => {
                        if let Err(e) = self.spool.commit(bytes, lines) {
                            log::error!("spool {}: {e}", self.settings.spool_path);
                        }
                        if self.spool.is_empty() {
                            log::info!("spool replayed: the record database has every event");
                            self.spooling = false;
                        }
                    }
                }
                self.statuses.written(&statuses, Instant::now());
            }
            Err(e) => {
                self.metrics.record_write_failed();
                log::warn!("{e}; retrying in {:?}", self.backoff);
                self.statuses.put_back(statuses, Instant::now());
                self.resting = true;
                ctx.run_later(self.backoff, |act, ctx| {
                    act.resting = false;
                    act.pump(ctx);
                });
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
            }
        }
        self.metrics
            .set_records_waiting(self.queue.len(), self.spool.waiting());
        self.pump(ctx);
    }
}

impl Actor for RecordQueue {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Due progress-only statuses are written on this tick.
        let tick =
            (self.statuses.interval() / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        ctx.run_interval(tick, |act, ctx| act.pump(ctx));
        if !self.spool.is_empty() {
            log::warn!(
                "replaying {} events spooled by a previous run from {}",
                self.spool.waiting(),
                self.settings.spool_path
            );
            self.spooling = true;
        }
        self.pump(ctx);
    }
}

#[derive(Message)]
#[rtype(result = "()")]
enum Command {
    /// An event and its journal number.
    Event(RecordEvent, u64),
    Status(Arc<StatusRecord>),
    Flush(oneshot::Sender<()>),
}

impl Handler<Command> for RecordQueue {
    type Result = ();

    fn handle(&mut self, cmd: Command, ctx: &mut Self::Context) {
        match cmd {
            Command::Event(e, n) => self.add_event(e, n, ctx),
            Command::Status(s) => self.add_status(s, ctx),
            Command::Flush(done) => {
                self.flushes.push(done);
                self.pump(ctx);
            }
        }
    }
}

/// The handle routing uses: every call returns at once.
#[derive(Clone)]
pub struct Recorder {
    queue: Addr<RecordQueue>,
    journal: Arc<Mutex<Journal>>,
}

impl Recorder {
    /// Open the database, apply the migrations, open the spool and start the actors. Must run
    /// inside an actix system. A database that cannot be reached now is not an error: events
    /// wait (and spool) until it can.
    pub fn start(settings: &RecordSettings, metrics: Arc<Metrics>) -> anyhow::Result<Recorder> {
        let url = DbUrl::parse(settings.url.expose())?;
        match super::db::Db::connect(&url).and_then(|mut db| db.migrate()) {
            Ok(applied) if !applied.is_empty() => {
                log::info!("record database migrated: {}", applied.join(", "))
            }
            Ok(_) => {}
            Err(e) => log::warn!("{e}; events will wait for it"),
        }
        let spool_path = Path::new(&settings.spool_path);
        let failed =
            |e: std::io::Error| anyhow::anyhow!("records.spool_path {}: {e}", settings.spool_path);
        let mut spool = Spool::open(spool_path).map_err(failed)?;
        let (mut journal, left) = Journal::open(&journal::beside(spool_path)).map_err(failed)?;
        if !left.is_empty() {
            // The previous run was killed with these events queued: the spool replays them.
            log::warn!(
                "{} events queued by a run that did not stop cleanly: replaying them",
                left.len()
            );
            spool.append(&left).map_err(failed)?;
            journal.clear().map_err(failed)?;
        }
        let journal = Arc::new(Mutex::new(journal));
        let writer_url = url.clone();
        let writer = SyncArbiter::start(1, move || DbWriter::new(writer_url.clone()));
        let queue = RecordQueue {
            writer,
            settings: settings.clone(),
            metrics,
            queue: VecDeque::new(),
            journal: journal.clone(),
            spool,
            spooling: false,
            statuses: Coalescer::new(Duration::from_millis(settings.status_interval_ms)),
            writing: false,
            last_write: None,
            wake_set: false,
            backoff: Duration::from_millis(100),
            resting: false,
            flushes: Vec::new(),
        }
        .start();
        Ok(Recorder { queue, journal })
    }

    /// Take an event: it is in the journal on disk when this returns, so routing may
    /// acknowledge what caused it.
    pub fn event(&self, event: RecordEvent) {
        let number = self
            .journal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .append(&event);
        self.queue.do_send(Command::Event(event, number));
    }

    pub fn status(&self, status: Arc<StatusRecord>) {
        self.queue.do_send(Command::Status(status));
    }

    /// Resolves when everything handed over so far is in the database (or spooled, if the
    /// database stays away: the caller bounds the wait).
    pub async fn flush(&self) {
        let (done, flushed) = oneshot::channel();
        self.queue.do_send(Command::Flush(done));
        let _ = flushed.await;
    }
}
