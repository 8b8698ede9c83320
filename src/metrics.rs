//! Prometheus metrics: named here once so every part counts the same way.
//! The exporter is installed by the daemon; without it these calls are no-ops.

use metrics::{counter, gauge, histogram};

/// An item was durably handed to the bus by a channel.
pub fn item_received(channel: &str) {
    counter!("pietura_items_received_total", "channel" => channel.to_string()).increment(1);
}

/// An item was registered; `state` is routed, review or forwarding.
pub fn item_registered(channel: &str, state: &str, seconds_since_receipt: f64) {
    counter!("pietura_items_registered_total", "channel" => channel.to_string(), "state" => state.to_string())
        .increment(1);
    histogram!("pietura_receipt_to_registration_seconds", "channel" => channel.to_string())
        .record(seconds_since_receipt);
}

/// A mailbox round failed (connection, login, TLS, a command); retried with backoff.
pub fn mailbox_error(instance: &str) {
    counter!("pietura_mailbox_errors_total", "instance" => instance.to_string()).increment(1);
}

/// A delivery report about one of our answers was recorded on its item.
pub fn answer_bounced(channel: &str) {
    counter!("pietura_answers_bounced_total", "channel" => channel.to_string()).increment(1);
}

/// An answer whose sender died mid-send was not sent again (it may have
/// gone out): the office checks it.
pub fn reply_uncertain() {
    counter!("pietura_answers_uncertain_total").increment(1);
}

/// A redelivered item was recognised and not registered again.
pub fn item_duplicate(channel: &str) {
    counter!("pietura_items_duplicate_total", "channel" => channel.to_string()).increment(1);
}

/// A possible duplicate linked at registration (`channel`: the new item's,
/// `other`: the earlier item's).
pub fn duplicate_linked(channel: &str, other: &str) {
    counter!("pietura_duplicates_linked_total", "channel" => channel.to_string(), "other" => other.to_string()).increment(1);
}

/// A message could not be processed and went to the dead-letter queue.
pub fn item_dead_lettered() {
    counter!("pietura_items_dead_lettered_total").increment(1);
}

/// An item failed too often while others registered: dead-lettered as poison.
pub fn item_poison() {
    counter!("pietura_items_poison_total").increment(1);
}

/// The janitor removed `n` of `what` (notices, door_claims, blobs,
/// blob_bytes, temp_files) that nothing reads any more.
pub fn pruned(what: &str, n: u64) {
    counter!("pietura_pruned_total", "what" => what.to_string()).increment(n);
}

/// A dead letter was kept as a parked item.
pub fn item_parked() {
    counter!("pietura_items_parked_total").increment(1);
}

/// A routed notice left the outbox for a unit queue.
pub fn item_routed(unit: &str) {
    counter!("pietura_items_routed_total", "unit" => unit.to_string()).increment(1);
}

/// A rules reload was tried.
pub fn rules_reloaded(ok: bool) {
    counter!("pietura_rules_reloads_total", "result" => if ok { "ok" } else { "refused" })
        .increment(1);
}

/// Open items per unit by deadline state. Every unit of the rule set is
/// set, at zero when it has nothing open, so no gauge keeps a stale value.
pub fn open_items<'a>(
    units: impl Iterator<Item = &'a str>,
    counts: &[crate::registry::deadlines::OpenCounts],
) {
    let mut review = 0;
    let mut set = |unit: &str, c: Option<&crate::registry::deadlines::OpenCounts>| {
        let label = if unit.is_empty() { "none" } else { unit }.to_string();
        let v =
            |f: fn(&crate::registry::deadlines::OpenCounts) -> i64| c.map_or(0.0, |c| f(c) as f64);
        gauge!("pietura_items_open", "unit" => label.clone()).set(v(|c| c.open));
        gauge!("pietura_items_overdue", "unit" => label.clone()).set(v(|c| c.overdue));
        gauge!("pietura_items_due_soon", "unit" => label.clone()).set(v(|c| c.due_soon));
        gauge!("pietura_items_paused", "unit" => label).set(v(|c| c.paused));
        review += c.map_or(0, |c| c.in_review);
    };
    let mut seen = std::collections::HashSet::new();
    for unit in units.chain(std::iter::once("")) {
        seen.insert(unit.to_string());
        set(unit, counts.iter().find(|c| c.unit == unit));
    }
    // Items of a unit no longer in the rules still count.
    for c in counts.iter().filter(|c| !seen.contains(&c.unit)) {
        set(&c.unit, Some(c));
    }
    gauge!("pietura_review_backlog").set(review as f64);
}

/// An item was registered in the external DMS.
pub fn dms_registered() {
    counter!("pietura_dms_registered_total").increment(1);
}

/// A DMS registration or update attempt failed; it is retried.
pub fn dms_failed() {
    counter!("pietura_dms_errors_total").increment(1);
}

/// Items waiting for their first DMS registration.
pub fn dms_pending(items: i64) {
    gauge!("pietura_dms_pending_items").set(items as f64);
}

/// Whether the DMS's last health check passed (1) or not (0).
pub fn dms_up(up: bool) {
    gauge!("pietura_dms_up").set(if up { 1.0 } else { 0.0 });
}

/// A supervised component is running (1) or not (0).
pub fn component_up(component: &str, up: bool) {
    gauge!("pietura_component_up", "component" => component.to_string()).set(if up {
        1.0
    } else {
        0.0
    });
}

/// A supervised component was started again after a failure.
pub fn component_restarted(component: &str) {
    counter!("pietura_component_restarts_total", "component" => component.to_string()).increment(1);
}

/// A message in which clamd found malware.
pub fn malware_found() {
    counter!("pietura_malware_found_total").increment(1);
}
