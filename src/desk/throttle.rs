//! Sign-in throttling that slows an attacker without locking anyone out.
//!
//! Failed sign-ins are counted per username and per client address over a
//! window. After `free` failures every further attempt waits first, the
//! wait doubling with each failure up to `max_delay` — so guessing slows to
//! a crawl, yet the right password is still accepted after at most
//! `max_delay`. An address a user has signed in from before is not slowed
//! by failures for that user elsewhere (someone guessing "anna" from
//! another address does not delay Anna at her own desk), only by its own
//! failures. Parallel guessing gains nothing: at most [`IN_FLIGHT`]
//! attempts per address wait at once; more are refused (429) at once.
//!
//! In memory, per daemon (a scaled-out installation multiplies the budget by
//! its daemons; delays still bound each of them).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Failures older than this are forgotten.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// The first delay after the free failures.
pub const FIRST_DELAY: Duration = Duration::from_millis(250);
/// Attempts from one address waiting or being checked at once.
pub const IN_FLIGHT: u32 = 4;
/// Entries kept per map before old ones are pruned.
const MAX_ENTRIES: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Count {
    failures: u32,
    last: Instant,
}

#[derive(Debug, Default)]
struct State {
    users: HashMap<String, Count>,
    addresses: HashMap<IpAddr, Count>,
    in_flight: HashMap<IpAddr, u32>,
    /// (username, address) pairs that signed in successfully.
    known: HashSet<(String, IpAddr)>,
}

/// The throttle shared by the sign-in handlers.
#[derive(Debug)]
pub struct SignInThrottle {
    free: u32,
    max_delay: Duration,
    state: Mutex<State>,
}

/// An attempt admitted by [`SignInThrottle::admit`]: wait [`Attempt::delay`]
/// before checking the password; dropping it frees the address's slot.
#[derive(Debug)]
pub struct Attempt {
    throttle: Arc<SignInThrottle>,
    address: IpAddr,
    pub delay: Duration,
}

impl Drop for Attempt {
    fn drop(&mut self) {
        let mut s = self.throttle.lock();
        if let Some(n) = s.in_flight.get_mut(&self.address) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                s.in_flight.remove(&self.address);
            }
        }
    }
}

fn key(username: &str) -> String {
    username.trim().to_lowercase()
}

fn live(c: Option<&Count>, now: Instant) -> u32 {
    c.filter(|c| now.duration_since(c.last) < WINDOW)
        .map_or(0, |c| c.failures)
}

impl SignInThrottle {
    /// `free` failures before delays begin; delays never exceed `max_delay`.
    pub fn new(free: u32, max_delay: Duration) -> Arc<Self> {
        Arc::new(Self {
            free: free.max(1),
            max_delay,
            state: Mutex::new(State::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The wait after `failures` failures.
    pub fn delay_for(&self, failures: u32) -> Duration {
        if failures < self.free {
            return Duration::ZERO;
        }
        let doublings = (failures - self.free).min(20);
        FIRST_DELAY
            .saturating_mul(1_u32 << doublings)
            .min(self.max_delay)
    }

    /// Admits an attempt with its delay, or None when the address has
    /// [`IN_FLIGHT`] attempts pending already.
    pub fn admit(self: &Arc<Self>, username: &str, address: IpAddr) -> Option<Attempt> {
        self.admit_at(username, address, Instant::now())
    }

    fn admit_at(
        self: &Arc<Self>,
        username: &str,
        address: IpAddr,
        now: Instant,
    ) -> Option<Attempt> {
        let k = key(username);
        let mut s = self.lock();
        let pending = s.in_flight.entry(address).or_insert(0);
        if *pending >= IN_FLIGHT {
            return None;
        }
        *pending += 1;
        let by_address = live(s.addresses.get(&address), now);
        let by_user = if s.known.contains(&(k.clone(), address)) {
            0
        } else {
            live(s.users.get(&k), now)
        };
        drop(s);
        Some(Attempt {
            throttle: self.clone(),
            address,
            delay: self.delay_for(by_address.max(by_user)),
        })
    }

    /// Counts a failure against the username and the address.
    pub fn failed(&self, username: &str, address: IpAddr) {
        self.failed_at(username, address, Instant::now());
    }

    fn failed_at(&self, username: &str, address: IpAddr, now: Instant) {
        let mut s = self.lock();
        let bump = |c: &mut Count| {
            if now.duration_since(c.last) >= WINDOW {
                c.failures = 0;
            }
            c.failures = c.failures.saturating_add(1);
            c.last = now;
        };
        let fresh = Count {
            failures: 0,
            last: now,
        };
        bump(s.users.entry(key(username)).or_insert(fresh));
        bump(s.addresses.entry(address).or_insert(fresh));
        if s.users.len() > MAX_ENTRIES || s.addresses.len() > MAX_ENTRIES {
            s.users.retain(|_, c| now.duration_since(c.last) < WINDOW);
            s.addresses
                .retain(|_, c| now.duration_since(c.last) < WINDOW);
        }
    }

    /// Remembers that `username` signs in from `address`; the address's own
    /// failures are forgiven (the user got it right in the end).
    pub fn succeeded(&self, username: &str, address: IpAddr) {
        let mut s = self.lock();
        if s.known.len() > MAX_ENTRIES {
            s.known.clear();
        }
        s.known.insert((key(username), address));
        s.addresses.remove(&address);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn delays_grow_with_failures_and_stay_bounded() {
        let t = SignInThrottle::new(3, Duration::from_secs(4));
        let d: Vec<u64> = (0..10).map(|n| t.delay_for(n).as_millis() as u64).collect();
        assert_eq!(d, [0, 0, 0, 250, 500, 1000, 2000, 4000, 4000, 4000]);
    }

    #[test]
    fn guessing_slows_the_guesser_not_the_user_at_a_known_address() {
        let t = SignInThrottle::new(2, Duration::from_secs(8));
        let (attacker, office) = (ip("203.0.113.9"), ip("10.0.0.5"));
        let now = Instant::now();
        // Anna signed in from her office before.
        t.succeeded("anna", office);
        for _ in 0..6 {
            t.failed_at("Anna", attacker, now);
        }
        let a = t.admit_at("anna", attacker, now).expect("admitted");
        assert_eq!(a.delay, Duration::from_secs(4), "6 failures: 250 ms × 2^4");
        drop(a);
        let at_office = t.admit_at("anna", office, now).expect("admitted");
        assert_eq!(
            at_office.delay,
            Duration::ZERO,
            "not locked out, not slowed"
        );
        drop(at_office);
        // From a new address Anna waits, but a bounded time, and is admitted.
        let elsewhere = t.admit_at("anna", ip("10.0.0.6"), now).expect("admitted");
        assert!(elsewhere.delay <= Duration::from_secs(8));
        drop(elsewhere);
        // Another user from the attacker's address is slowed by the address.
        let other = t.admit_at("janis", attacker, now).expect("admitted");
        assert!(other.delay > Duration::ZERO);
        drop(other);
        // Failures are forgotten after the window.
        let later = now + WINDOW + Duration::from_secs(1);
        let a = t.admit_at("anna", attacker, later).expect("admitted");
        assert_eq!(a.delay, Duration::ZERO);
    }

    #[test]
    fn parallel_attempts_per_address_are_capped() {
        let t = SignInThrottle::new(5, Duration::from_secs(8));
        let a = ip("203.0.113.9");
        let held: Vec<Attempt> = (0..IN_FLIGHT)
            .map(|_| t.admit("x", a).expect("admitted"))
            .collect();
        assert!(t.admit("y", a).is_none(), "a fifth at once is refused");
        assert!(t.admit("y", ip("203.0.113.10")).is_some(), "others are not");
        drop(held);
        assert!(t.admit("y", a).is_some(), "slots come back");
    }
}
