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

/// A redelivered item was recognised and not registered again.
pub fn item_duplicate(channel: &str) {
    counter!("pietura_items_duplicate_total", "channel" => channel.to_string()).increment(1);
}

/// A message could not be processed and went to the dead-letter queue.
pub fn item_dead_lettered() {
    counter!("pietura_items_dead_lettered_total").increment(1);
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

/// Open items per unit by deadline state; refreshed every minute.
pub fn open_items(counts: &[crate::registry::deadlines::OpenCounts]) {
    let mut review = 0;
    for c in counts {
        let unit = if c.unit.is_empty() {
            "none".to_string()
        } else {
            c.unit.clone()
        };
        gauge!("pietura_items_open", "unit" => unit.clone()).set(c.open as f64);
        gauge!("pietura_items_overdue", "unit" => unit.clone()).set(c.overdue as f64);
        gauge!("pietura_items_due_soon", "unit" => unit.clone()).set(c.due_soon as f64);
        gauge!("pietura_items_paused", "unit" => unit).set(c.paused as f64);
        review += c.in_review;
    }
    gauge!("pietura_review_backlog").set(review as f64);
}
