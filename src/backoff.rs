//! Backoff, written once: the wait before the next try after failures,
//! doubling from a first wait up to a limit.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// `first` doubled `doublings` times (0 and below: `first`), at most `max`.
pub fn doubling(first: Duration, doublings: i64, max: Duration) -> Duration {
    let n = u32::try_from(doublings.clamp(0, 16)).unwrap_or(0);
    first.saturating_mul(1u32 << n).min(max)
}

/// The same as a `chrono` duration, for times stored in the registry.
pub fn doubling_chrono(first: Duration, doublings: i64, max: Duration) -> chrono::Duration {
    chrono::Duration::from_std(doubling(first, doublings, max)).unwrap_or(chrono::Duration::MAX)
}

/// Sleeps `pause` (then doubles it, up to 30 s); false if shutdown came first.
pub async fn pause_before_retry(pause: &mut Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => return false,
        _ = tokio::time::sleep(*pause) => {}
    }
    *pause = (*pause * 2).min(Duration::from_secs(30));
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubling_doubles_up_to_the_limit() {
        let (first, max) = (Duration::from_secs(5), Duration::from_secs(600));
        assert_eq!(doubling(first, 0, max), Duration::from_secs(5));
        assert_eq!(doubling(first, -3, max), Duration::from_secs(5));
        assert_eq!(doubling(first, 1, max), Duration::from_secs(10));
        assert_eq!(doubling(first, 3, max), Duration::from_secs(40));
        assert_eq!(doubling(first, 40, max), max);
    }
}
