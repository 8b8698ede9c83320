//! Leased work: the one way a daemon takes rows of a queue table (outbox,
//! replies, DMS registrations) so that several daemons on one database never
//! work the same row at once, and a daemon that stalls past its claim cannot
//! record its outcome over another's.
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

/// Periodic jobs one daemon at a time runs (the janitor), one row each in
/// `periodic_jobs`, due when its next run time has come; claimed by name
/// ([`Registry::claim_periodic`]) and moved on by [`Registry::periodic_done`].
pub const PERIODIC: Queue = Queue {
    name: "periodic job",
    table: "periodic_jobs",
    key: "name",
    due: "next_run_at <= {now}",
    order: "next_run_at",
    scope: Some("name"),
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
        let now = db_now_plus(self.sqlite, 0);
        let until = db_now_plus(self.sqlite, ttl_secs);
        let due = queue.due.replace("{now}", &now);
        let scoped = match (queue.scope, scope) {
            (Some(column), Some(_)) => format!(" AND {column} = $3"),
            _ => String::new(),
        };
        let Queue {
            table,
            key,
            order,
            on_claim,
            ..
        } = queue;
        let pick = format!(
            "SELECT {key} FROM {table} WHERE ({due}){scoped} \
             AND (lease_until IS NULL OR lease_until <= {now}) ORDER BY {order} LIMIT $2"
        );
        let set = format!(
            "lease_holder = $1, lease_until = {until}, lease_token = lease_token + 1{on_claim}"
        );
        let sql = if self.sqlite {
            // One writer: the statement is the claim.
            format!("UPDATE {table} SET {set} WHERE {key} IN ({pick}) RETURNING {key}, lease_token")
        } else {
            format!(
                "WITH picked AS ({pick} FOR UPDATE SKIP LOCKED) \
                 UPDATE {table} SET {set} FROM picked WHERE {table}.{key} = picked.{key} \
                 RETURNING {table}.{key}, {table}.lease_token"
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
        rows.iter()
            .map(|r| {
                Ok(Lease {
                    key: r.try_get(0)?,
                    token: r.try_get(1)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(q(ctx))
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
        let n = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(lease.key.clone())
            .bind(lease.token)
            .execute(&self.pool)
            .await
            .map_err(q(format!("renewal of {} {}", queue.name, lease.key)))?
            .rows_affected();
        if n == 1 {
            Ok(())
        } else {
            Err(lost(queue, lease))
        }
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

impl Registry {
    /// Claims the periodic job `name` for `ttl_secs` if it is due and no
    /// other daemon runs it: the singleton work of several daemons.
    pub async fn claim_periodic(
        &self,
        name: &str,
        ttl_secs: i64,
    ) -> Result<Option<Lease>, RegistryError> {
        let mut leases = self.claim(&PERIODIC, Some(name), 1, ttl_secs).await?;
        Ok(leases.pop())
    }

    /// Ends a run of a periodic job: due again `every_secs` from now (the
    /// database's clock), with a line on what it did; refused
    /// ([`RegistryError::LeaseLost`]) when another daemon claimed it since.
    pub async fn periodic_done(
        &self,
        lease: &Lease,
        every_secs: i64,
        result: &str,
    ) -> Result<(), RegistryError> {
        let ctx = format!("run of {} {}", PERIODIC.name, lease.key);
        let mut tx = self.pool.begin().await.map_err(q(ctx.clone()))?;
        fence_one(&mut tx, &PERIODIC, lease).await?;
        let sql = format!(
            "UPDATE periodic_jobs SET next_run_at = {}, last_run_at = {}, last_result = $2 \
             WHERE name = $1",
            db_now_plus(self.sqlite, every_secs),
            db_now_plus(self.sqlite, 0)
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(lease.key.clone())
            .bind(result.to_string())
            .execute(&mut *tx)
            .await
            .map_err(q(ctx.clone()))?;
        tx.commit().await.map_err(q(ctx))
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
