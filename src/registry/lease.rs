//! Leased work: the one way a daemon takes rows of a queue table (outbox,
//! replies, DMS registrations, the embedded bus) or a piece of named work
//! (a scan file, a channel's SMS flush, the deadline recompute, a unit's
//! daily digest, a mailbox: [`NAMED`]) so that several daemons on one
//! database never work the same thing at once, and a daemon that stalls
//! past its claim cannot record its outcome over another's.
//!
//! - Time is the database's clock (`now()` on PostgreSQL, `strftime('now')`
//!   on SQLite), never a host's: leases mean the same on every machine.
//! - A claim takes up to N due, unleased rows in one statement: PostgreSQL
//!   skips rows another transaction is claiming (`FOR UPDATE SKIP LOCKED`),
//!   SQLite has one writer. Each claim raises the row's `lease_token`.
//! - The token is the fence: renewing, releasing and completing name it, and
//!   a row claimed again since (the lease ran out and another daemon took
//!   it) refuses them. A refused completion is logged and nothing is written.
//!
//! A lease that ran out but that nobody claimed again is still honoured:
//! the work was done once, by its holder.
//!
//! Whoever holds a claim while waiting on something slow (OCR, an SMTP
//! relay, a registry stall) renews it well inside its time, or cuts the
//! wait off before the claim runs out ([`Renewal`] renews in the background).

use sqlx::Row;

use super::{Registry, RegistryError, q};

/// A queue table worked under leases: its rows carry `lease_holder`,
/// `lease_until` and `lease_token`.
#[derive(Debug)]
pub struct Queue {
    /// What the rows are, for logs and errors.
    pub name: &'static str,
    table: &'static str,
    key: &'static str,
    /// When a row is due (SQL; `{now}` is the database's time).
    due: &'static str,
    order: &'static str,
    /// A column a claim may be limited to (`claim`'s `scope`).
    scope: Option<&'static str>,
    /// More assignments made by a claim (e.g. counting attempts).
    on_claim: &'static str,
}

/// Routed notices waiting to be published.
pub const OUTBOX: Queue = Queue {
    name: "outbox notice",
    table: "outbox",
    key: "id",
    due: "1 = 1",
    order: "id",
    scope: None,
    on_claim: "",
};

/// Answers waiting to be sent, one claim scope per channel instance.
pub const REPLIES: Queue = Queue {
    name: "answer",
    table: "replies",
    key: "item_id",
    due: "done_at IS NULL AND next_attempt_at <= {now}",
    order: "next_attempt_at",
    scope: Some("channel_instance"),
    on_claim: "",
};

/// Items waiting to be registered (or updated) in the external DMS; a
/// claim counts as an attempt (a crashed one too).
pub const DMS: Queue = Queue {
    name: "DMS registration",
    table: "dms_registrations",
    key: "item_id",
    due: "next_attempt_at <= {now} AND (registered_at IS NULL OR stale_since IS NOT NULL)",
    order: "next_attempt_at",
    scope: None,
    on_claim: ", attempts = attempts + 1",
};

/// Live intake messages of the embedded bus; a claim is a delivery and
/// counts towards the delivery limit.
pub const BUS_INTAKE: Queue = Queue {
    name: "embedded bus message",
    table: "bus_messages",
    key: "id",
    due: "queue = 'intake' AND dead_reason IS NULL",
    order: "id",
    scope: None,
    on_claim: ", deliveries = deliveries + 1",
};

/// Dead-lettered intake messages of the embedded bus, for the parking consumer.
pub const BUS_DEAD: Queue = Queue {
    name: "embedded bus dead letter",
    table: "bus_messages",
    key: "id",
    due: "queue = 'intake' AND dead_reason IS NOT NULL",
    order: "id",
    scope: None,
    on_claim: "",
};

/// Items registered while clamd could not be reached, waiting for their
/// malware scan ([`crate::malware::run_pending`]).
pub const MALWARE_SCANS: Queue = Queue {
    name: "malware scan",
    table: "malware_scans",
    key: "item_id",
    due: "1 = 1",
    order: "created_at",
    scope: None,
    on_claim: "",
};

/// Named work (`work_leases`): one row per name, made by the first claim
/// ([`Registry::claim_named`]); `state` keeps what its last holder recorded.
pub const NAMED: Queue = Queue {
    name: "named work",
    table: "work_leases",
    key: "name",
    due: "1 = 1",
    order: "name",
    scope: None,
    on_claim: "",
};

/// One claimed row: its key and the fencing token of this claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub key: String,
    pub token: i64,
}

/// The database's time `secs` seconds from now, as an SQL expression in the
/// format of [`super::db_time`] (microseconds, `Z`), so it compares as text
/// with stored times.
pub(super) fn db_now_plus(sqlite: bool, secs: i64) -> String {
    if sqlite {
        format!("(strftime('%Y-%m-%dT%H:%M:%f', 'now', '{secs:+} seconds') || '000Z')")
    } else {
        format!(
            "to_char((now() + interval '{secs} seconds') AT TIME ZONE 'UTC', \
             'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
        )
    }
}

impl Registry {
    /// The database's clock: the one clock every daemon's leases are
    /// measured by, whatever their own machines' clocks say.
    pub async fn clock(&self) -> Result<chrono::DateTime<chrono::Utc>, RegistryError> {
        let ctx = "the database's clock";
        let sql = format!("SELECT {}", db_now_plus(self.is_sqlite(), 0));
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_one(&self.pool)
            .await
            .map_err(q(ctx))?;
        let text: String = row.try_get(0).map_err(q(ctx))?;
        super::parse_db_time(&text).ok_or_else(|| {
            q(ctx)(sqlx::Error::Decode(
                format!("time {text:?} is not RFC 3339").into(),
            ))
        })
    }
}

impl Registry {
    /// The rows `select` reads for these claimed leases, each with its lease:
    /// `select` names the claimed keys as `{keys}` and returns each row's key
    /// as `item_id`.
    pub(super) async fn rows_of_leases(
        &self,
        leases: &[Lease],
        select: &str,
        ctx: &str,
    ) -> Result<Vec<(sqlx::any::AnyRow, Lease)>, RegistryError> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let sql = select.replace("{keys}", &super::register::numbered(1, leases.len()));
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for l in leases {
            query = query.bind(l.key.clone());
        }
        let rows = query.fetch_all(&self.pool).await.map_err(q(ctx))?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let key: String = r.try_get("item_id").map_err(q(ctx))?;
            if let Some(lease) = leases.iter().find(|l| l.key == key).cloned() {
                out.push((r, lease));
            }
        }
        Ok(out)
    }
}

/// `(key = $a AND lease_token = $b) OR …` for `n` leases from `$first`.
fn fenced(queue: &Queue, first: usize, n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "({} = ${} AND lease_token = ${})",
                queue.key,
                first + 2 * i,
                first + 2 * i + 1
            )
        })
        .collect::<Vec<_>>()
        .join(" OR ")
}

fn lost(queue: &Queue, lease: &Lease) -> RegistryError {
    RegistryError::LeaseLost {
        what: queue.name,
        key: lease.key.clone(),
        token: lease.token,
    }
}

impl Registry {
    /// Claims up to `limit` due rows of `queue` not leased by anyone (or
    /// whose lease ran out) for this daemon, for `ttl_secs` seconds of the
    /// database's clock; `scope` limits the claim to rows whose scope column
    /// holds that value. Oldest due first.
    pub async fn claim(
        &self,
        queue: &Queue,
        scope: Option<&str>,
        limit: i64,
        ttl_secs: i64,
    ) -> Result<Vec<Lease>, RegistryError> {
        Ok(self
            .claim_rows(queue, scope, limit, ttl_secs, &[])
            .await?
            .into_iter()
            .map(|(_, lease)| lease)
            .collect())
    }

    /// [`Registry::claim`], returning with each lease the claimed row's
    /// `columns` (read in the claiming statement: no second query).
    pub async fn claim_rows(
        &self,
        queue: &Queue,
        scope: Option<&str>,
        limit: i64,
        ttl_secs: i64,
        columns: &[&str],
    ) -> Result<Vec<(sqlx::any::AnyRow, Lease)>, RegistryError> {
        let now = db_now_plus(self.sqlite, 0);
        let due = queue.due.replace("{now}", &now);
        let scoped = match (queue.scope, scope) {
            (Some(column), Some(_)) => format!(" AND {column} = $3"),
            _ => String::new(),
        };
        let Queue {
            table, key, order, ..
        } = queue;
        let pick = format!(
            "SELECT {key} FROM {table} WHERE ({due}){scoped} \
             AND (lease_until IS NULL OR lease_until <= {now}) ORDER BY {order} LIMIT $2"
        );
        let sql = if self.sqlite {
            // One writer: the statement is the claim.
            self.claim_sql(queue, ttl_secs, "", &format!("{key} IN ({pick})"), columns)
        } else {
            self.claim_sql(
                queue,
                ttl_secs,
                &format!("WITH picked AS ({pick} FOR UPDATE SKIP LOCKED) "),
                &format!("{table}.{key} = picked.{key}"),
                columns,
            )
        };
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(self.holder.to_string())
            .bind(limit);
        if !scoped.is_empty() {
            query = query.bind(scope.map(str::to_string));
        }
        let ctx = format!("claim of {} rows", queue.name);
        let rows = query.fetch_all(&self.pool).await.map_err(q(ctx.clone()))?;
        leases_of(rows).map_err(q(ctx))
    }

    /// The claiming `UPDATE` of `queue` for the rows `which` selects
    /// (`$1` is the holder; on PostgreSQL `with` names `picked`), returning
    /// key, token and `columns`.
    fn claim_sql(
        &self,
        queue: &Queue,
        ttl_secs: i64,
        with: &str,
        which: &str,
        columns: &[&str],
    ) -> String {
        let Queue {
            table,
            key,
            on_claim,
            ..
        } = queue;
        let until = db_now_plus(self.sqlite, ttl_secs);
        let from = if with.is_empty() { "" } else { " FROM picked" };
        let returning: String = [*key, "lease_token"]
            .iter()
            .chain(columns)
            .map(|c| {
                if self.sqlite {
                    c.to_string()
                } else {
                    format!("{table}.{c}")
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "{with}UPDATE {table} SET lease_holder = $1, lease_until = {until}, \
             lease_token = lease_token + 1{on_claim}{from} WHERE {which} RETURNING {returning}"
        )
    }

    /// Claims the one row of `queue` whose key is `key`, if it is due and
    /// not leased by anyone (or its lease ran out): None while another
    /// daemon holds it.
    pub async fn claim_one(
        &self,
        queue: &Queue,
        key: &str,
        ttl_secs: i64,
    ) -> Result<Option<Lease>, RegistryError> {
        let now = db_now_plus(self.sqlite, 0);
        let which = format!(
            "{} = $2 AND ({}) AND (lease_until IS NULL OR lease_until <= {now})",
            queue.key,
            queue.due.replace("{now}", &now)
        );
        let sql = self.claim_sql(queue, ttl_secs, "", &which, &[]);
        let ctx = format!("claim of {} {key}", queue.name);
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(self.holder.to_string())
            .bind(key.to_string())
            .fetch_all(&self.pool)
            .await
            .map_err(q(ctx.clone()))?;
        Ok(leases_of(rows)
            .map_err(q(ctx))?
            .pop()
            .map(|(_, lease)| lease))
    }

    /// Claims the named work `name` ([`NAMED`], its row made on first use);
    /// None while another daemon holds it.
    pub async fn claim_named(
        &self,
        name: &str,
        ttl_secs: i64,
    ) -> Result<Option<Lease>, RegistryError> {
        sqlx::query("INSERT INTO work_leases (name) VALUES ($1) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(q(format!("named work {name}")))?;
        self.claim_one(&NAMED, name, ttl_secs).await
    }

    /// What the last holder of the named work recorded with
    /// [`Registry::complete_named`], if anything.
    pub async fn named_state(&self, name: &str) -> Result<Option<String>, RegistryError> {
        let ctx = format!("state of named work {name}");
        let row = sqlx::query("SELECT state FROM work_leases WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(q(ctx.clone()))?;
        match row {
            Some(r) => r.try_get(0).map_err(q(ctx)),
            None => Ok(None),
        }
    }

    /// Who holds the named work and until when (database time), if anyone.
    pub async fn named_holder(
        &self,
        name: &str,
    ) -> Result<Option<(String, String)>, RegistryError> {
        let ctx = format!("holder of named work {name}");
        let row = sqlx::query("SELECT lease_holder, lease_until FROM work_leases WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(q(ctx.clone()))?;
        let Some(row) = row else { return Ok(None) };
        let holder: Option<String> = row.try_get(0).map_err(q(ctx.clone()))?;
        let until: Option<String> = row.try_get(1).map_err(q(ctx))?;
        Ok(holder.map(|h| (h, until.unwrap_or_default())))
    }

    /// Completes a claim of named work, recording `state` for the next
    /// holder; refused when it was claimed again since.
    pub async fn complete_named(&self, lease: &Lease, state: &str) -> Result<(), RegistryError> {
        let ctx = format!("completion of named work {}", lease.key);
        let mut tx = self.pool.begin().await.map_err(q(ctx.clone()))?;
        fence_one(&mut tx, &NAMED, lease).await?;
        let sql = format!(
            "UPDATE work_leases SET state = $2, updated_at = {} WHERE name = $1",
            db_now_plus(self.sqlite, 0)
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(lease.key.clone())
            .bind(state)
            .execute(&mut *tx)
            .await
            .map_err(q(ctx.clone()))?;
        tx.commit().await.map_err(q(ctx))
    }

    /// Extends a claim to `ttl_secs` from now (database clock); refused
    /// ([`RegistryError::LeaseLost`]) when the row was claimed again since.
    pub async fn renew(
        &self,
        queue: &Queue,
        lease: &Lease,
        ttl_secs: i64,
    ) -> Result<(), RegistryError> {
        let sql = format!(
            "UPDATE {} SET lease_until = {} WHERE {}",
            queue.table,
            db_now_plus(self.sqlite, ttl_secs),
            fenced(queue, 1, 1)
        );
        self.fenced_write(queue, lease, sql, "renewal", None).await
    }

    /// Gives claims back unworked (shutdown, an error before the work), so
    /// another daemon need not wait for them to run out. Claims taken over
    /// since are left alone.
    pub async fn release(&self, queue: &Queue, leases: &[Lease]) -> Result<(), RegistryError> {
        if leases.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "UPDATE {} SET lease_holder = NULL, lease_until = NULL WHERE {}",
            queue.table,
            fenced(queue, 1, leases.len())
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for lease in leases {
            query = query.bind(lease.key.clone()).bind(lease.token);
        }
        query
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(q(format!(
                "release of {} {} rows",
                leases.len(),
                queue.name
            )))
    }

    /// Completes one claim with nothing else to record (the row stays,
    /// unleased); refused when the row was claimed again since.
    pub async fn complete(&self, queue: &Queue, lease: &Lease) -> Result<(), RegistryError> {
        let ctx = format!("completion of {} {}", queue.name, lease.key);
        let mut tx = self.pool.begin().await.map_err(q(ctx.clone()))?;
        fence_one(&mut tx, queue, lease).await?;
        tx.commit().await.map_err(q(ctx))
    }
}

/// The key and token (the first two columns) of each claimed row.
fn leases_of(rows: Vec<sqlx::any::AnyRow>) -> Result<Vec<(sqlx::any::AnyRow, Lease)>, sqlx::Error> {
    rows.into_iter()
        .map(|r| {
            let lease = Lease {
                key: r.try_get(0)?,
                token: r.try_get(1)?,
            };
            Ok((r, lease))
        })
        .collect()
}

impl Registry {
    /// Gives a claim back to be due again only `secs` seconds from now
    /// (database clock): a retry later, by whichever daemon claims it then.
    /// Refused when the row was claimed again since.
    pub async fn postpone(
        &self,
        queue: &Queue,
        lease: &Lease,
        secs: i64,
    ) -> Result<(), RegistryError> {
        let sql = format!(
            "UPDATE {} SET lease_holder = NULL, lease_until = {} WHERE {}",
            queue.table,
            db_now_plus(self.sqlite, secs),
            fenced(queue, 1, 1)
        );
        self.fenced_write(queue, lease, sql, "postponing", None)
            .await
    }

    /// Completes a claim by removing its row (the work is done and nothing
    /// of it needs keeping); refused when the row was claimed again since.
    pub async fn remove(&self, queue: &Queue, lease: &Lease) -> Result<(), RegistryError> {
        let sql = format!("DELETE FROM {} WHERE {}", queue.table, fenced(queue, 1, 1));
        self.fenced_write(queue, lease, sql, "removal", None).await
    }

    /// Runs `sql`, fenced by `lease` (`$1` key, `$2` token, then `$3` =
    /// `value` if given): exactly one row, or the claim was lost.
    async fn fenced_write(
        &self,
        queue: &Queue,
        lease: &Lease,
        sql: String,
        what: &str,
        value: Option<&str>,
    ) -> Result<(), RegistryError> {
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(lease.key.clone())
            .bind(lease.token);
        if let Some(value) = value {
            query = query.bind(value.to_string());
        }
        let n = query
            .execute(&self.pool)
            .await
            .map_err(q(format!("{what} of {} {}", queue.name, lease.key)))?
            .rows_affected();
        if n == 1 {
            Ok(())
        } else {
            Err(lost(queue, lease))
        }
    }
}

/// Renews one claim in the background every third of its time until
/// dropped or [`Renewal::stop`]ped, for work that waits on something slow
/// (OCR of a long file, a delivery held through a registry stall). A lost
/// claim stops the renewing and is logged; [`Renewal::lost`] tells.
pub struct Renewal {
    task: tokio::task::JoinHandle<()>,
    lost: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Renewal {
    /// Starts renewing `lease` of `queue` to `ttl_secs` from each renewal.
    pub fn start(registry: Registry, queue: &'static Queue, lease: Lease, ttl_secs: i64) -> Self {
        let lost = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = lost.clone();
        let every = std::time::Duration::from_millis((ttl_secs.max(1) as u64) * 1000 / 3);
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                match registry.renew(queue, &lease, ttl_secs).await {
                    Ok(()) => {}
                    Err(e @ RegistryError::LeaseLost { .. }) => {
                        tracing::warn!("{e}; its holder here stops and leaves it to the other");
                        flag.store(true, std::sync::atomic::Ordering::SeqCst);
                        return;
                    }
                    // The database is away: try again; the claim may still
                    // be ours when it is back (nobody else can claim then).
                    Err(e) => tracing::warn!("renewing a claim of {}: {e}", queue.name),
                }
            }
        });
        Renewal { task, lost }
    }

    /// True once a renewal was refused: another daemon holds the work now.
    pub fn lost(&self) -> bool {
        self.lost.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Stops renewing (the claim is then completed, released or left to run out).
    pub fn stop(self) {}
}

impl Drop for Renewal {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Registry {
    /// Claims the periodic job `name` (named work, [`NAMED`]) for `ttl_secs`
    /// when it is due and no other daemon runs it: the singleton work of
    /// several daemons. None while it is held or not due yet.
    pub async fn claim_periodic(
        &self,
        name: &str,
        ttl_secs: i64,
    ) -> Result<Option<Lease>, RegistryError> {
        self.claim_named(name, ttl_secs).await
    }

    /// Ends a run of a periodic job: its state is the line on what the run
    /// did, and it is due again `every_secs` from now (the database's
    /// clock: the row stays unclaimable until then); refused
    /// ([`RegistryError::LeaseLost`]) when another daemon claimed it since.
    pub async fn periodic_done(
        &self,
        lease: &Lease,
        every_secs: i64,
        result: &str,
    ) -> Result<(), RegistryError> {
        let sql = format!(
            "UPDATE work_leases SET lease_holder = NULL, lease_until = {}, state = $3, \
             updated_at = {} WHERE {}",
            db_now_plus(self.sqlite, every_secs),
            db_now_plus(self.sqlite, 0),
            fenced(&NAMED, 1, 1)
        );
        self.fenced_write(&NAMED, lease, sql, "run", Some(result))
            .await
    }
}

/// The fence, in the completing transaction: ends the claims whose token is
/// still the row's (locking those rows until the transaction ends) and
/// returns them; each refused one (claimed again since) is logged.
pub(super) async fn fence(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    queue: &Queue,
    leases: &[Lease],
) -> Result<Vec<Lease>, RegistryError> {
    if leases.is_empty() {
        return Ok(Vec::new());
    }
    let ctx = format!("completion of {} {} rows", leases.len(), queue.name);
    let sql = format!(
        "UPDATE {} SET lease_holder = NULL, lease_until = NULL WHERE {} RETURNING {}",
        queue.table,
        fenced(queue, 1, leases.len()),
        queue.key
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for lease in leases {
        query = query.bind(lease.key.clone()).bind(lease.token);
    }
    let rows = query.fetch_all(&mut **tx).await.map_err(q(ctx.clone()))?;
    let mut held = std::collections::HashSet::with_capacity(rows.len());
    for r in &rows {
        held.insert(r.try_get::<String, _>(0).map_err(q(ctx.clone()))?);
    }
    let (kept, refused): (Vec<Lease>, Vec<Lease>) =
        leases.iter().cloned().partition(|l| held.contains(&l.key));
    for lease in &refused {
        tracing::warn!(
            key = %lease.key,
            token = lease.token,
            "{} claimed again by another daemon after this one's claim ran out: its outcome here is not recorded",
            queue.name
        );
    }
    Ok(kept)
}

/// [`Registry::renew`] in the caller's transaction (which then holds the
/// row until it ends): the work recorded there is recorded only while the
/// claim is still this daemon's.
pub(super) async fn renew_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    sqlite: bool,
    queue: &Queue,
    lease: &Lease,
    ttl_secs: i64,
) -> Result<(), RegistryError> {
    let sql = format!(
        "UPDATE {} SET lease_until = {} WHERE {}",
        queue.table,
        db_now_plus(sqlite, ttl_secs),
        fenced(queue, 1, 1)
    );
    let n = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(lease.key.clone())
        .bind(lease.token)
        .execute(&mut **tx)
        .await
        .map_err(q(format!("renewal of {} {}", queue.name, lease.key)))?
        .rows_affected();
    if n == 1 {
        Ok(())
    } else {
        Err(lost(queue, lease))
    }
}

/// Removes the claimed row in the caller's transaction; false (nothing
/// removed) when it was claimed again since.
pub(super) async fn remove_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    queue: &Queue,
    lease: &Lease,
) -> Result<bool, RegistryError> {
    let sql = format!("DELETE FROM {} WHERE {}", queue.table, fenced(queue, 1, 1));
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(lease.key.clone())
        .bind(lease.token)
        .execute(&mut **tx)
        .await
        .map(|r| r.rows_affected() == 1)
        .map_err(q(format!("removal of {} {}", queue.name, lease.key)))
}

/// [`fence`] for one claim: refused ([`RegistryError::LeaseLost`]) when it
/// was claimed again since.
pub(super) async fn fence_one(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    queue: &Queue,
    lease: &Lease,
) -> Result<(), RegistryError> {
    match fence(tx, queue, std::slice::from_ref(lease)).await?.len() {
        1 => Ok(()),
        _ => Err(lost(queue, lease)),
    }
}
