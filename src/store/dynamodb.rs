//! The latest status of each attempt in DynamoDB, the production durable copy.
//!
//! # Table
//!
//! One item per attempt: partition key `quiz_id` (S), sort key `attempt_id` (S); attributes
//! `seq` (N), `user_status` (S), `connected` (BOOL), `last_seen` (N, ms), `away_count` (N),
//! `reason` (S, when the server set the attempt offline), `status` (S, the STATUS as proctors
//! see it, JSON) and `updated_at` (N, ms). `invigil dynamodb create-table` creates it in
//! on-demand capacity mode (PAY_PER_REQUEST): an exam is a burst, then nothing, which
//! provisioned capacity would pay for all day. A snapshot is one Query by `quiz_id`.
//!
//! # Writes
//!
//! Write cost is why schools pick this product, so writes follow [`Coalescer`]: a change of
//! `user_status` or `connected` is written with the next batch, progress-only updates of an
//! attempt at most once per `dynamodb.write_interval_ms`, in BatchWriteItem requests of up to
//! 25 items. Unprocessed items and failed requests are retried with backoff; the latest status
//! of every attempt waits in memory meanwhile (bounded by the number of attempts).

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use actix::prelude::*;
use aws_sdk_dynamodb::{
    types::{
        AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, PutRequest,
        ScalarAttributeType, WriteRequest,
    },
    Client,
};
use futures_util::future::{BoxFuture, FutureExt};
use tokio::sync::oneshot;

use super::{coalesce::Coalescer, StatusStore, StoreError};
use crate::{
    config::DynamoSettings,
    metrics::Metrics,
    protocol::{
        ids::{AttemptId, AttemptKey, QuizId},
        status::StatusRecord,
    },
};

/// Items per BatchWriteItem request (DynamoDB's limit).
const BATCH: usize = 25;
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A client for the configured endpoint and region; credentials come from the standard AWS
/// chain (environment, profile, web identity, container or instance role).
pub async fn client(settings: &DynamoSettings) -> Client {
    Client::new(&loader(settings).load().await)
}

/// The SDK configuration for `settings`: HTTPS on rustls with ring, region and endpoint.
fn loader(settings: &DynamoSettings) -> aws_config::ConfigLoader {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http)
        .region(aws_config::Region::new(settings.region.clone()));
    if !settings.endpoint.is_empty() {
        loader = loader.endpoint_url(&settings.endpoint);
    }
    loader
}

/// Create the status table (on-demand capacity) and wait until it is active.
pub async fn create_table(client: &Client, table: &str) -> anyhow::Result<()> {
    let attribute = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
    };
    let key = |name: &str, kind| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
    };
    client
        .create_table()
        .table_name(table)
        .attribute_definitions(attribute("quiz_id")?)
        .attribute_definitions(attribute("attempt_id")?)
        .key_schema(key("quiz_id", KeyType::Hash)?)
        .key_schema(key("attempt_id", KeyType::Range)?)
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "creating table {table}: {}",
                aws_sdk_dynamodb::error::DisplayErrorContext(e)
            )
        })?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let described = client.describe_table().table_name(table).send().await;
        let active = described
            .ok()
            .and_then(|d| d.table)
            .and_then(|t| t.table_status);
        if active == Some(aws_sdk_dynamodb::types::TableStatus::Active) {
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!("table {table} did not become active within a minute");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn item(record: &StatusRecord) -> HashMap<String, AttributeValue> {
    let n = |v: u64| AttributeValue::N(v.to_string());
    let mut item = HashMap::from([
        (
            "quiz_id".to_string(),
            AttributeValue::S(record.key.quiz.to_string()),
        ),
        (
            "attempt_id".to_string(),
            AttributeValue::S(record.key.attempt.to_string()),
        ),
        ("seq".to_string(), n(record.seq)),
        (
            "user_status".to_string(),
            AttributeValue::S(record.user_status.as_str().into()),
        ),
        (
            "connected".to_string(),
            AttributeValue::Bool(record.connected),
        ),
        ("last_seen".to_string(), n(record.last_seen)),
        ("away_count".to_string(), n(record.away_count)),
        (
            "status".to_string(),
            AttributeValue::S(record.to_stored_json()),
        ),
        ("updated_at".to_string(), n(crate::now_ms())),
    ]);
    if let Some(reason) = record.reason {
        item.insert("reason".into(), AttributeValue::S(reason.as_str().into()));
    }
    item
}

fn record_of(item: &HashMap<String, AttributeValue>) -> Option<StatusRecord> {
    let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok());
    let key = AttemptKey {
        quiz: QuizId::new(text("quiz_id")?),
        attempt: AttemptId::new(text("attempt_id")?),
    };
    StatusRecord::from_stored_json(key, text("status")?)
}

fn sdk_error(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError(aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string())
}

/// The latest statuses in DynamoDB.
pub struct DynamoStore {
    client: Client,
    table: String,
    writer: Addr<DynamoWriter>,
}

impl DynamoStore {
    /// Must run inside an actix system.
    pub fn new(client: Client, settings: &DynamoSettings, metrics: Arc<Metrics>) -> Self {
        let writer = DynamoWriter {
            client: client.clone(),
            table: settings.table.clone(),
            waiting: Coalescer::new(Duration::from_millis(settings.write_interval_ms)),
            writing: false,
            resting: false,
            backoff: Duration::from_millis(100),
            flushes: Vec::new(),
            metrics,
        }
        .start();
        DynamoStore {
            client,
            table: settings.table.clone(),
            writer,
        }
    }
}

impl StatusStore for DynamoStore {
    fn record(&self, record: Arc<StatusRecord>) {
        self.writer.do_send(WriterCommand::Record(record));
    }

    fn latest(
        &self,
        key: &AttemptKey,
    ) -> BoxFuture<'static, Result<Option<Arc<StatusRecord>>, StoreError>> {
        let get = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("quiz_id", AttributeValue::S(key.quiz.to_string()))
            .key("attempt_id", AttributeValue::S(key.attempt.to_string()))
            .consistent_read(true)
            .send();
        async move {
            let out = get.await.map_err(sdk_error)?;
            Ok(out.item.as_ref().and_then(record_of).map(Arc::new))
        }
        .boxed()
    }

    fn quiz(
        &self,
        quiz: &QuizId,
    ) -> BoxFuture<'static, Result<Vec<Arc<StatusRecord>>, StoreError>> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("quiz_id = :q")
            .expression_attribute_values(":q", AttributeValue::S(quiz.to_string()))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        async move {
            let mut found = Vec::new();
            while let Some(item) = pages.next().await {
                let item = item.map_err(sdk_error)?;
                if let Some(record) = record_of(&item) {
                    found.push(Arc::new(record));
                }
            }
            Ok(found)
        }
        .boxed()
    }

    fn flush(&self) -> BoxFuture<'static, ()> {
        let (done, flushed) = oneshot::channel();
        self.writer.do_send(WriterCommand::Flush(done));
        async move {
            let _ = flushed.await;
        }
        .boxed()
    }
}

/// Writes the waiting statuses in batches, one request at a time.
struct DynamoWriter {
    client: Client,
    table: String,
    waiting: Coalescer,
    writing: bool,
    resting: bool,
    backoff: Duration,
    flushes: Vec<oneshot::Sender<()>>,
    metrics: Arc<Metrics>,
}

impl DynamoWriter {
    fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.writing || self.resting {
            return;
        }
        let flushing = !self.flushes.is_empty();
        let batch = self.waiting.take_due(Instant::now(), flushing, BATCH);
        if batch.is_empty() {
            if self.waiting.is_empty() {
                for done in self.flushes.drain(..) {
                    let _ = done.send(());
                }
            }
            return;
        }
        self.writing = true;
        let requests: Vec<WriteRequest> = batch
            .iter()
            .filter_map(|r| {
                let put = PutRequest::builder().set_item(Some(item(r))).build().ok()?;
                Some(WriteRequest::builder().put_request(put).build())
            })
            .collect();
        let send = self
            .client
            .batch_write_item()
            .request_items(&self.table, requests)
            .send();
        let started = Instant::now();
        ctx.spawn(send.into_actor(self).map(move |result, act, ctx| {
            act.writing = false;
            let now = Instant::now();
            match result {
                Ok(out) => {
                    // Items DynamoDB did not take (throttling) wait again.
                    let unprocessed: Vec<(String, String)> = out
                        .unprocessed_items
                        .unwrap_or_default()
                        .into_values()
                        .flatten()
                        .filter_map(|w| {
                            let item = w.put_request?.item;
                            let text = |n: &str| item.get(n)?.as_s().ok().cloned();
                            Some((text("quiz_id")?, text("attempt_id")?))
                        })
                        .collect();
                    let (again, done): (Vec<_>, Vec<_>) = batch.into_iter().partition(|r| {
                        unprocessed.contains(&(r.key.quiz.to_string(), r.key.attempt.to_string()))
                    });
                    act.metrics.dynamo_written(done.len(), started.elapsed());
                    act.waiting.written(&done, now);
                    if !again.is_empty() {
                        act.waiting.put_back(again, now);
                        act.rest(ctx);
                    } else {
                        act.backoff = Duration::from_millis(100);
                    }
                }
                Err(e) => {
                    act.metrics.dynamo_failed();
                    log::warn!(
                        "writing {} statuses to DynamoDB: {}; retrying in {:?}",
                        batch.len(),
                        aws_sdk_dynamodb::error::DisplayErrorContext(e),
                        act.backoff
                    );
                    act.waiting.put_back(batch, now);
                    act.rest(ctx);
                }
            }
            act.pump(ctx);
        }));
    }

    /// Wait out the backoff before the next write.
    fn rest(&mut self, ctx: &mut Context<Self>) {
        self.resting = true;
        ctx.run_later(self.backoff, |act, ctx| {
            act.resting = false;
            act.pump(ctx);
        });
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }
}

impl Actor for DynamoWriter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let tick =
            (self.waiting.interval() / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        ctx.run_interval(tick, |act, ctx| act.pump(ctx));
    }
}

#[derive(Message)]
#[rtype(result = "()")]
enum WriterCommand {
    Record(Arc<StatusRecord>),
    Flush(oneshot::Sender<()>),
}

impl Handler<WriterCommand> for DynamoWriter {
    type Result = ();

    fn handle(&mut self, cmd: WriterCommand, ctx: &mut Self::Context) {
        match cmd {
            WriterCommand::Record(record) => {
                if self.waiting.offer(record, Instant::now()) {
                    self.pump(ctx);
                }
            }
            WriterCommand::Flush(done) => {
                self.flushes.push(done);
                self.pump(ctx);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config::Settings, store::DurableStore, store::MemoryStore};

    /// Settings for the DynamoDB-compatible endpoint the test script starts on 127.0.0.1:5005.
    pub(crate) fn test_settings(table: &str) -> DynamoSettings {
        let mut s = Settings::defaults().dynamodb;
        s.table = table.to_string();
        s.endpoint = "http://127.0.0.1:5005".into();
        s.write_interval_ms = 200;
        s
    }

    async fn test_client(settings: &DynamoSettings) -> Client {
        // The local endpoint takes any credentials; production uses the standard chain.
        let creds = aws_sdk_dynamodb::config::Credentials::new("test", "test", None, None, "test");
        Client::new(&loader(settings).credentials_provider(creds).load().await)
    }

    #[actix_rt::test]
    async fn dynamodb_behind_memory_passes_the_conformance_suite_and_persists() {
        let table = format!("invigil-test-{:08x}", rand::random::<u32>());
        let settings = test_settings(&table);
        let client = test_client(&settings).await;
        create_table(&client, &table)
            .await
            .expect("the table is created");
        let metrics = Arc::new(Metrics::default());
        let dynamo = Arc::new(DynamoStore::new(client.clone(), &settings, metrics.clone()));
        let store = DurableStore::new(Arc::new(MemoryStore::new()), dynamo.clone());
        super::super::conformance::run(&store).await;
        store.flush().await;
        // A fresh store (a restarted cluster) reads what was written, newest seq kept.
        let fresh = DynamoStore::new(client, &settings, metrics.clone());
        let listed = fresh.quiz(&QuizId::new("q1")).await.unwrap();
        let attempts: Vec<(&str, u64)> = listed
            .iter()
            .map(|r| (r.key.attempt.as_str(), r.seq))
            .collect();
        assert_eq!(attempts, [("a1", 2), ("a2", 1)]);
        let key = AttemptKey {
            quiz: QuizId::new("q2"),
            attempt: AttemptId::new("a1"),
        };
        assert_eq!(fresh.latest(&key).await.unwrap().unwrap().seq, 1);
        // Four statuses of three attempts: three or four writes, as a1's first one was or was
        // not still waiting when its second came.
        let text = metrics.render();
        let written = ["3", "4"]
            .iter()
            .any(|n| text.contains(&format!("invigil_dynamodb_items_written_total {n}\n")));
        assert!(written, "{text}");
    }
}
