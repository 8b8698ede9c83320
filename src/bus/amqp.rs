//! RabbitMQ bus (lapin). We own reconnection instead of lapin's recovery
//! (see stack-facts: it may not republish unconfirmed messages): every
//! [`Bus::publish`] waits for its own confirm, and on a lost connection,
//! a nack or an unroutable return it reconnects and publishes again until
//! its deadline. A repeated publish is harmless: the registry deduplicates by
//! idempotency key.
//!
//! Topology (`<p>` = `bus.prefix`), declared idempotently on every connect:
//! `<p>.intake` topic exchange → `<p>.engine` quorum queue (`intake.#`,
//! `x-delivery-limit`, dead-lettered to `<p>.dead`); `<p>.routed` direct
//! exchange → `<p>.review` and one `<p>.unit.<id>` quorum queue per unit,
//! each bounded ([`NoticeBounds`]: oldest dropped, intake never blocked).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    BasicRejectOptions, ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions,
    QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::Mutex;

use super::{Acker, Bus, BusError, Consumer, DeadReason, Delivery, Route};

/// What the AMQP bus needs to know.
#[derive(Debug, Clone)]
pub struct AmqpOptions {
    /// One address per cluster node (at least one), tried in turn.
    pub urls: Vec<String>,
    /// `x-quorum-initial-group-size` for new quorum queues; `None`: the broker's default.
    pub quorum_group_size: Option<u16>,
    pub prefix: String,
    pub prefetch: u16,
    pub delivery_limit: u32,
    /// How long one publish keeps retrying before it reports failure.
    pub publish_timeout: Duration,
    /// Bounds of the unit and review queues (0: none), see [`NoticeBounds`].
    pub notice_bounds: NoticeBounds,
    /// The CA and client certificate for `amqps://` addresses (`bus.tls`).
    pub tls: crate::tls::AmqpTls,
}

/// How many notices a unit (or the review) queue keeps: past either bound
/// the oldest is dropped (`x-overflow = drop-head`), so a queue nobody reads
/// never fills the broker until its memory or disk alarm blocks intake. The
/// registry keeps every item; a unit re-reads what it missed there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoticeBounds {
    /// Most messages (`x-max-length`); 0: no bound.
    pub max_length: u32,
    /// Most message bytes (`x-max-length-bytes`); 0: no bound.
    pub max_bytes: u64,
}

impl NoticeBounds {
    fn args(&self) -> Vec<(&'static str, AMQPValue)> {
        let mut args = Vec::new();
        if self.max_length > 0 {
            args.push((
                "x-max-length",
                AMQPValue::LongLongInt(i64::from(self.max_length)),
            ));
        }
        if self.max_bytes > 0 {
            args.push((
                "x-max-length-bytes",
                AMQPValue::LongLongInt(i64::try_from(self.max_bytes).unwrap_or(i64::MAX)),
            ));
        }
        if !args.is_empty() {
            args.push(("x-overflow", AMQPValue::LongString("drop-head".into())));
        }
        args
    }

    /// The `rabbitmqctl set_policy` that bounds queues declared before
    /// the bounds (or with others): a policy applies to existing queues.
    fn policy_command(&self, prefix: &str) -> String {
        let mut def = Vec::new();
        if self.max_length > 0 {
            def.push(format!("\"max-length\":{}", self.max_length));
        }
        if self.max_bytes > 0 {
            def.push(format!("\"max-length-bytes\":{}", self.max_bytes));
        }
        def.push("\"overflow\":\"drop-head\"".into());
        let pattern = format!("^{}\\.(unit\\..+|review)$", prefix.replace('.', "\\."));
        format!(
            "rabbitmqctl set_policy --apply-to queues {prefix}-notices '{pattern}' '{{{}}}'",
            def.join(",")
        )
    }
}

struct Link {
    generation: u64,
    /// Which of [`AmqpOptions::urls`] this link is connected to.
    node: usize,
    connection: Connection,
    publish: Channel,
}

struct Inner {
    opts: AmqpOptions,
    link: Mutex<Option<Arc<Link>>>,
    generation: std::sync::atomic::AtomicU64,
    /// The node to try first on the next connect (the one after a lost link's).
    next_node: std::sync::atomic::AtomicUsize,
    units_declared: Mutex<HashSet<String>>,
}

/// How long one connection attempt to one node may take (a node that
/// accepts TCP but never answers must not hold the bus).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// RabbitMQ with publisher confirms and manual acknowledgements.
#[derive(Clone)]
pub struct AmqpBus {
    inner: Arc<Inner>,
}

fn unavailable(e: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(e.to_string())
}

fn s(v: &str) -> ShortString {
    ShortString::from(v.to_string())
}

fn quorum_args(group_size: Option<u16>, extra: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    t.insert(s("x-queue-type"), AMQPValue::LongString("quorum".into()));
    if let Some(n) = group_size {
        t.insert(
            s("x-quorum-initial-group-size"),
            AMQPValue::LongInt(i32::from(n)),
        );
    }
    for (k, v) in extra {
        t.insert(s(k), v.clone());
    }
    t
}

fn durable_exchange() -> ExchangeDeclareOptions {
    ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    }
}

fn durable_queue() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

impl Inner {
    fn name(&self, suffix: &str) -> String {
        format!("{}.{suffix}", self.opts.prefix)
    }

    async fn declare(&self, conn: &Connection, ch: &Channel) -> Result<(), lapin::Error> {
        let p = |x: &str| s(&self.name(x));
        ch.exchange_declare(
            p("intake"),
            ExchangeKind::Topic,
            durable_exchange(),
            FieldTable::default(),
        )
        .await?;
        ch.exchange_declare(
            p("dead"),
            ExchangeKind::Fanout,
            durable_exchange(),
            FieldTable::default(),
        )
        .await?;
        ch.exchange_declare(
            p("routed"),
            ExchangeKind::Direct,
            durable_exchange(),
            FieldTable::default(),
        )
        .await?;
        ch.queue_declare(
            p("dead"),
            durable_queue(),
            quorum_args(self.opts.quorum_group_size, &[]),
        )
        .await?;
        ch.queue_bind(
            p("dead"),
            p("dead"),
            s(""),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
        ch.queue_declare(
            p("engine"),
            durable_queue(),
            quorum_args(
                self.opts.quorum_group_size,
                &[
                    (
                        "x-delivery-limit",
                        AMQPValue::LongInt(self.opts.delivery_limit as i32),
                    ),
                    (
                        "x-dead-letter-exchange",
                        AMQPValue::LongString(self.name("dead").into()),
                    ),
                ],
            ),
        )
        .await?;
        ch.queue_bind(
            p("engine"),
            p("intake"),
            s("intake.#"),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
        self.declare_notice_queue(conn, "review").await?;
        ch.queue_bind(
            p("review"),
            p("routed"),
            s("review"),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
        Ok(())
    }

    /// Declares a unit or review queue with the configured bounds. One
    /// declared before (an older version, other bounds) cannot take new
    /// arguments (PRECONDITION_FAILED, which closes the channel): it is then
    /// used as it is, and the log says how to bound it.
    async fn declare_notice_queue(
        &self,
        conn: &Connection,
        suffix: &str,
    ) -> Result<(), lapin::Error> {
        let name = self.name(suffix);
        let bounds = self.opts.notice_bounds.args();
        // Its own channel, so a refusal does not close the caller's.
        let try_ch = conn.create_channel().await?;
        let declared = try_ch
            .queue_declare(
                s(&name),
                durable_queue(),
                quorum_args(self.opts.quorum_group_size, &bounds),
            )
            .await;
        let _ = try_ch.close(200, s("declared")).await;
        let Err(refused) = declared else {
            return Ok(());
        };
        let check = conn.create_channel().await?;
        let exists = check
            .queue_declare(
                s(&name),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await;
        let _ = check.close(200, s("checked")).await;
        match exists {
            Ok(_) => {
                tracing::warn!(
                    queue = %name,
                    "queue exists with other arguments than bus.unit_queue_max_length / bus.unit_queue_max_bytes ({refused}); it is used as it is. Bound it with a policy: {}",
                    self.opts.notice_bounds.policy_command(&self.opts.prefix)
                );
                Ok(())
            }
            Err(_) => Err(refused),
        }
    }

    async fn declare_unit(
        &self,
        conn: &Connection,
        ch: &Channel,
        unit: &str,
    ) -> Result<(), lapin::Error> {
        let queue = s(&self.name(&format!("unit.{unit}")));
        self.declare_notice_queue(conn, &format!("unit.{unit}"))
            .await?;
        ch.queue_bind(
            queue,
            s(&self.name("routed")),
            s(&format!("unit.{unit}")),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
    }

    /// The current link, connecting (and declaring) if there is none: each
    /// node in turn, starting after the last lost one; the error of the last
    /// node tried when none answers.
    async fn link(&self) -> Result<Arc<Link>, BusError> {
        let mut guard = self.link.lock().await;
        if let Some(l) = guard.as_ref()
            && l.connection.status().connected()
            && l.publish.status().connected()
        {
            return Ok(l.clone());
        }
        let nodes = self.opts.urls.len().max(1);
        let first = self.next_node.load(std::sync::atomic::Ordering::SeqCst) % nodes;
        let mut last_error = BusError::Unavailable("no bus address configured".into());
        for i in 0..nodes {
            let node = (first + i) % nodes;
            match self.connect_node(node).await {
                Ok((connection, publish)) => {
                    self.units_declared.lock().await.clear();
                    let generation = self
                        .generation
                        .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                        + 1;
                    self.next_node
                        .store(node, std::sync::atomic::Ordering::SeqCst);
                    let link = Arc::new(Link {
                        generation,
                        node,
                        connection,
                        publish,
                    });
                    *guard = Some(link.clone());
                    tracing::info!(generation, node = node + 1, nodes, "connected to RabbitMQ");
                    return Ok(link);
                }
                Err(e) => {
                    if nodes > 1 {
                        tracing::warn!(node = node + 1, nodes, "RabbitMQ node unreachable: {e}");
                    }
                    last_error = e;
                }
            }
        }
        Err(last_error)
    }

    /// Connects to one node, turns confirms on and declares the topology.
    async fn connect_node(&self, node: usize) -> Result<(Connection, Channel), BusError> {
        let url = self
            .opts
            .urls
            .get(node)
            .ok_or_else(|| BusError::Unavailable("no bus address configured".into()))?;
        let name = format!("pietura-{}", std::process::id());
        let setup = async {
            let connection = connect_to(url, &self.opts.tls, &name).await?;
            let publish = connection.create_channel().await.map_err(unavailable)?;
            publish
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(unavailable)?;
            self.declare(&connection, &publish)
                .await
                .map_err(unavailable)?;
            Ok::<_, BusError>((connection, publish))
        };
        tokio::time::timeout(CONNECT_TIMEOUT, setup)
            .await
            .map_err(|_| {
                BusError::Unavailable(format!(
                    "node {} of {} did not answer within {CONNECT_TIMEOUT:?}",
                    node + 1,
                    self.opts.urls.len()
                ))
            })?
    }

    /// Drops a broken link so the next call reconnects, starting with
    /// another node (the lost one is tried last).
    async fn drop_link(&self, generation: u64) {
        let mut guard = self.link.lock().await;
        if guard.as_ref().is_some_and(|l| l.generation == generation)
            && let Some(l) = guard.take()
        {
            self.next_node
                .store(l.node + 1, std::sync::atomic::Ordering::SeqCst);
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                l.connection.close(200, s("reconnecting")),
            )
            .await;
        }
    }

    async fn publish_once(
        &self,
        route: Route<'_>,
        payload: &[u8],
        message_id: &str,
        deadline: tokio::time::Instant,
    ) -> Result<(), (u64, BusError)> {
        let link = self.link().await.map_err(|e| (0, e))?;
        let fail = |reason: String| {
            (
                link.generation,
                BusError::NotConfirmed {
                    message_id: message_id.to_string(),
                    reason,
                },
            )
        };
        let (exchange, key) = match route {
            Route::Intake(m) => (
                self.name("intake"),
                format!(
                    "intake.{}.{}",
                    m.channel.kind,
                    m.channel.instance.replace('.', "_")
                ),
            ),
            Route::Unit(u) => {
                let mut declared = self.units_declared.lock().await;
                if !declared.contains(u) {
                    self.declare_unit(&link.connection, &link.publish, u)
                        .await
                        .map_err(|e| fail(format!("declaring unit queue {u}: {e}")))?;
                    declared.insert(u.to_string());
                }
                (self.name("routed"), format!("unit.{u}"))
            }
            Route::Review => (self.name("routed"), "review".to_string()),
        };
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type(s("application/json"))
            .with_message_id(s(message_id))
            .with_app_id(s("pietura"));
        let confirm = link
            .publish
            .basic_publish(
                s(&exchange),
                s(&key),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                payload,
                props,
            )
            .await
            .map_err(|e| fail(e.to_string()))?;
        // A node that stops answering must not hold the publish past its
        // deadline: no confirm in time is a failure, never a success.
        let confirm = tokio::time::timeout_at(deadline, confirm)
            .await
            .map_err(|_| fail("no confirm before the publish deadline".into()))?
            .map_err(|e| fail(e.to_string()))?;
        if confirm.is_nack() {
            return Err(fail("the broker refused it (nack)".into()));
        }
        if let Some(returned) = confirm.take_message() {
            return Err(fail(format!(
                "unroutable ({} {}): no queue is bound for {key}",
                returned.reply_code, returned.reply_text
            )));
        }
        Ok(())
    }
}

impl AmqpBus {
    /// Connects once (so a wrong URL fails loudly at start) and declares the topology.
    pub async fn connect(opts: AmqpOptions) -> Result<Self, BusError> {
        let bus = AmqpBus {
            inner: Arc::new(Inner {
                opts,
                link: Mutex::new(None),
                generation: Default::default(),
                next_node: Default::default(),
                units_declared: Mutex::new(HashSet::new()),
            }),
        };
        bus.inner.link().await?;
        Ok(bus)
    }

    /// Closes the connection (tests use this to simulate a broker failure).
    pub async fn force_disconnect(&self) {
        let generation = self
            .inner
            .generation
            .load(std::sync::atomic::Ordering::SeqCst);
        self.inner.drop_link(generation).await;
    }

    /// Messages ready in one of this daemon's queues (`dead`, `engine`…).
    async fn queue_length(&self, suffix: &str) -> Result<u64, BusError> {
        let link = self.inner.link().await?;
        let ch = link
            .connection
            .create_channel()
            .await
            .map_err(unavailable)?;
        let q = ch
            .queue_declare(
                s(&self.inner.name(suffix)),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)?;
        let _ = ch.close(200, s("done")).await;
        Ok(u64::from(q.message_count()))
    }

    /// Queue names, for tests and operators.
    pub fn queue_name(&self, suffix: &str) -> String {
        self.inner.name(suffix)
    }
}

#[async_trait]
impl Bus for AmqpBus {
    async fn publish(
        &self,
        route: Route<'_>,
        payload: &[u8],
        message_id: &str,
    ) -> Result<(), BusError> {
        let deadline = tokio::time::Instant::now() + self.inner.opts.publish_timeout;
        let mut failures = 0;
        loop {
            match self
                .inner
                .publish_once(route, payload, message_id, deadline)
                .await
            {
                Ok(()) => return Ok(()),
                Err((generation, e)) => {
                    let pause = crate::backoff::doubling(
                        Duration::from_millis(100),
                        failures,
                        Duration::from_secs(5),
                    );
                    failures += 1;
                    if tokio::time::Instant::now() + pause > deadline {
                        return Err(e);
                    }
                    tracing::warn!(
                        message_id,
                        "publish failed, reconnecting and publishing again: {e}"
                    );
                    self.inner.drop_link(generation).await;
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }

    async fn consume_intake(&self) -> Result<Box<dyn Consumer>, BusError> {
        Ok(Box::new(AmqpConsumer {
            bus: self.clone(),
            queue: "engine",
            stream: None,
        }))
    }

    async fn consume_dead(&self) -> Result<Box<dyn Consumer>, BusError> {
        Ok(Box::new(AmqpConsumer {
            bus: self.clone(),
            queue: "dead",
            stream: None,
        }))
    }

    async fn ready(&self) -> bool {
        self.inner.link().await.is_ok()
    }

    async fn dead_letter_count(&self) -> Result<u64, BusError> {
        self.queue_length("dead").await
    }

    async fn intake_backlog(&self) -> Result<u64, BusError> {
        self.queue_length("engine").await
    }

    async fn declare_units(&self, units: &[String]) -> Result<(), BusError> {
        let link = self.inner.link().await?;
        let mut declared = self.inner.units_declared.lock().await;
        for u in units {
            self.inner
                .declare_unit(&link.connection, &link.publish, u)
                .await
                .map_err(unavailable)?;
            declared.insert(u.clone());
        }
        Ok(())
    }
}

/// One connection to one node, over TLS for `amqps://` (trusting only
/// `bus.tls.ca_file`, presenting the client certificate when one is set).
pub async fn connect_to(
    url: &str,
    tls: &crate::tls::AmqpTls,
    name: &str,
) -> Result<Connection, BusError> {
    let runtime = lapin::runtime::default_runtime().map_err(unavailable)?;
    Connection::connect_with_config(
        url,
        ConnectionProperties::default().with_connection_name(name.into()),
        tls.lapin_config(),
        runtime,
    )
    .await
    .map_err(|e| {
        if url.starts_with("amqps://") {
            BusError::Unavailable(format!(
                "{e} (TLS: the broker's certificate must chain to bus.tls.ca_file and \
                 name the address's host; a broker that asks for a client certificate \
                 needs bus.tls.client_cert and client_key)"
            ))
        } else {
            unavailable(e)
        }
    })
}

/// Deletes everything a daemon with `prefix` declared (its queues with their
/// messages, and its exchanges). For benchmarks and tests, which must not
/// leave queues behind: hundreds of idle quorum queues slow a broker down.
pub async fn delete_topology(
    url: &str,
    tls: &crate::tls::AmqpTls,
    prefix: &str,
    units: &[String],
) -> Result<(), BusError> {
    let conn = connect_to(url, tls, "pietura-cleanup").await?;
    let ch = conn.create_channel().await.map_err(unavailable)?;
    let mut queues: Vec<String> = ["engine", "dead", "review"]
        .iter()
        .map(|q| format!("{prefix}.{q}"))
        .collect();
    queues.extend(units.iter().map(|u| format!("{prefix}.unit.{u}")));
    for q in queues {
        ch.queue_delete(s(&q), QueueDeleteOptions::default())
            .await
            .map_err(unavailable)?;
    }
    for x in ["intake", "dead", "routed"] {
        ch.exchange_delete(
            s(&format!("{prefix}.{x}")),
            ExchangeDeleteOptions::default(),
        )
        .await
        .map_err(unavailable)?;
    }
    let _ = conn.close(200, s("topology deleted")).await;
    Ok(())
}

struct AmqpConsumer {
    bus: AmqpBus,
    /// `engine` (intake) or `dead`.
    queue: &'static str,
    stream: Option<(u64, Channel, lapin::Consumer)>,
}

impl AmqpConsumer {
    async fn open(&mut self) -> Result<(), BusError> {
        let inner = &self.bus.inner;
        let link = inner.link().await?;
        let ch = link
            .connection
            .create_channel()
            .await
            .map_err(unavailable)?;
        ch.basic_qos(inner.opts.prefetch, BasicQosOptions::default())
            .await
            .map_err(unavailable)?;
        let consumer = ch
            .basic_consume(
                s(&inner.name(self.queue)),
                s(""),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)?;
        self.stream = Some((link.generation, ch, consumer));
        Ok(())
    }
}

fn delivery_count(props: &BasicProperties) -> u32 {
    let Some(headers) = props.headers() else {
        return 0;
    };
    match headers.inner().get("x-delivery-count") {
        Some(AMQPValue::LongLongInt(n)) => u32::try_from(*n).unwrap_or(0),
        Some(AMQPValue::LongInt(n)) => u32::try_from(*n).unwrap_or(0),
        Some(AMQPValue::LongUInt(n)) => *n,
        Some(AMQPValue::ShortInt(n)) => u32::try_from(*n).unwrap_or(0),
        _ => 0,
    }
}

/// Why RabbitMQ dead-lettered a message (`x-first-death-reason`): the
/// quorum queue's delivery limit, or the engine's reject.
fn dead_reason(props: &BasicProperties) -> DeadReason {
    let first = props
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get("x-first-death-reason").cloned());
    let reason = match first {
        Some(AMQPValue::LongString(s)) => s.to_string(),
        Some(AMQPValue::ShortString(s)) => s.as_str().to_string(),
        _ => String::new(),
    };
    match reason.as_str() {
        "delivery_limit" => DeadReason {
            reason: "delivery limit reached (the engine restarted or failed while it had the item)"
                .into(),
            transient: true,
        },
        "rejected" => DeadReason {
            reason: "refused by the rules engine (its log says why)".into(),
            transient: false,
        },
        other => DeadReason {
            reason: format!("dead-lettered by the broker ({other})"),
            transient: false,
        },
    }
}

#[async_trait]
impl Consumer for AmqpConsumer {
    async fn next(&mut self) -> Option<Delivery> {
        let mut failures = 0;
        loop {
            let pause = crate::backoff::doubling(
                Duration::from_millis(200),
                failures,
                Duration::from_secs(10),
            );
            if self.stream.is_none()
                && let Err(e) = self.open().await
            {
                tracing::warn!("{} consumer: {e}; retrying in {pause:?}", self.queue);
                failures += 1;
                tokio::time::sleep(pause).await;
                continue;
            }
            let Some((generation, _, consumer)) = self.stream.as_mut() else {
                continue;
            };
            let generation = *generation;
            match consumer.next().await {
                Some(Ok(d)) if self.queue == "dead" => {
                    let reason = dead_reason(&d.properties);
                    return Some(Delivery::dead(
                        d.data,
                        reason,
                        Box::new(AmqpAcker { acker: d.acker }),
                    ));
                }
                Some(Ok(d)) => {
                    let previous = delivery_count(&d.properties);
                    return Some(Delivery::new(
                        d.data,
                        previous,
                        Box::new(AmqpAcker { acker: d.acker }),
                    ));
                }
                Some(Err(e)) => {
                    tracing::warn!(
                        "{} consumer lost its channel: {e}; reconnecting",
                        self.queue
                    )
                }
                None => tracing::warn!("{} consumer stream ended; reconnecting", self.queue),
            }
            self.stream = None;
            self.bus.inner.drop_link(generation).await;
            failures += 1;
            tokio::time::sleep(pause).await;
        }
    }
}

struct AmqpAcker {
    acker: lapin::Acker,
}

fn acked(result: Result<bool, lapin::Error>, what: &str) -> Result<(), BusError> {
    match result {
        Ok(true) => Ok(()),
        // The channel is gone: the broker will deliver the message again and
        // the registry will recognise it.
        Ok(false) => Err(BusError::Unavailable(format!(
            "{what} not sent: the channel was lost; the message will be redelivered"
        ))),
        Err(e) => Err(unavailable(e)),
    }
}

#[async_trait]
impl Acker for AmqpAcker {
    async fn ack(&self) -> Result<(), BusError> {
        acked(self.acker.ack(BasicAckOptions::default()).await, "ack")
    }

    async fn retry(&self) -> Result<(), BusError> {
        acked(
            self.acker
                .nack(BasicNackOptions {
                    requeue: true,
                    ..BasicNackOptions::default()
                })
                .await,
            "nack",
        )
    }

    async fn dead_letter(&self, reason: &str) -> Result<(), BusError> {
        tracing::error!(reason, "dead-lettering message");
        acked(
            self.acker
                .reject(BasicRejectOptions { requeue: false })
                .await,
            "reject",
        )
    }
}
