//! Login throttling: when an account or a client address must wait before it
//! may try a password again.
//!
//! An attempt counts from the moment it is let through to the password check,
//! and counts as a failure until the check says otherwise. Letting it through
//! and counting it are one step in the store, serialised per account and per
//! address, so however many attempts arrive at once, no more passwords are
//! checked than the budget allows. An attempt still unsettled after [`WINDOW`]
//! was abandoned (the server stopped mid-check); it keeps counting as a
//! failure.
//!
//! Attempts refused while a lock is in force never reach the password check,
//! so they are not counted; the lock that follows the next counted attempt is
//! twice as long as the one before.
//!
//! A successful sign-in settles as [`settle_success`] says: alone, it forgives
//! the account's earlier failures; amid other attempts, it forgives nothing.
//!
//! Under attack: when more than [`GLOBAL_FAILURES`] attempts, on any accounts
//! from any addresses, have failed within [`WINDOW`], each address gets a
//! tighter budget ([`address_failure_limit`]): a flood spread over many
//! addresses, each staying below its own lock, still meets one. A browser
//! that has signed in as a user before (it holds a device cookie bound to the
//! username) is exempt from its address's lock while it is trusted
//! ([`device_trusted`]), so people behind an address shared with an attacker
//! can still sign in; never from the account's lock.

use chrono::{DateTime, Duration, Utc};

/// Failures within this window start a lock.
pub const WINDOW: Duration = Duration::minutes(15);
/// How many failures within [`WINDOW`] lock an account.
pub const ACCOUNT_FAILURES: usize = 5;
pub const FIRST_LOCK: Duration = Duration::minutes(1);
pub const LONGEST_LOCK: Duration = Duration::hours(1);
/// Failures from one client address, any accounts, within [`WINDOW`].
pub const ADDRESS_FAILURES: usize = 50;
/// The global budget: failures on any accounts from any addresses within
/// [`WINDOW`] beyond which every address gets the tighter limit below.
pub const GLOBAL_FAILURES: usize = 250;
/// Failures from one client address within [`WINDOW`] while the global
/// budget is exceeded.
pub const ADDRESS_FAILURES_UNDER_ATTACK: usize = 10;
/// Failures with one device cookie within [`WINDOW`] after which it is no
/// longer trusted.
pub const DEVICE_FAILURES: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginGate {
    Open,
    /// Try again after this long.
    Locked {
        retry_after: Duration,
    },
}

impl LoginGate {
    /// Whole seconds for a `Retry-After` header, never zero.
    pub fn retry_after_secs(&self) -> Option<i64> {
        match self {
            LoginGate::Open => None,
            LoginGate::Locked { retry_after } => {
                let ms = retry_after.num_milliseconds().max(1);
                Some((ms + 999) / 1000)
            }
        }
    }
}

/// Whether an account may attempt a password now, given the start times of
/// its attempts that count (failed, still being checked, or successes amid
/// other attempts; any order).
///
/// A streak of failures locks the account once five of them fall within
/// fifteen minutes; each later failure in the streak doubles the lock, up to an
/// hour. The streak ends when no failure happens for fifteen minutes after the
/// lock in force has expired.
pub fn account_gate(failures: &[DateTime<Utc>], now: DateTime<Utc>) -> LoginGate {
    let mut sorted = failures.to_vec();
    sorted.sort();
    let mut streak: Vec<DateTime<Utc>> = Vec::new();
    let mut lock: Option<Duration> = None;
    for t in sorted {
        if let Some(&last) = streak.last()
            && t - last > WINDOW + lock.unwrap_or_else(Duration::zero)
        {
            streak.clear();
            lock = None;
        }
        streak.push(t);
        let n = streak.len();
        if n >= ACCOUNT_FAILURES && (lock.is_some() || t - streak[n - ACCOUNT_FAILURES] <= WINDOW) {
            let doublings = u32::try_from(n - ACCOUNT_FAILURES)
                .unwrap_or(u32::MAX)
                .min(16);
            let length = FIRST_LOCK * 2i32.pow(doublings);
            lock = Some(length.min(LONGEST_LOCK));
        }
    }
    match (streak.last(), lock) {
        (Some(&last), Some(length)) if now < last + length => LoginGate::Locked {
            retry_after: last + length - now,
        },
        _ => LoginGate::Open,
    }
}

/// How many failures within [`WINDOW`] lock an address, given how many
/// attempts have failed (or are being checked) everywhere in that window.
pub fn address_failure_limit(failures_everywhere: usize) -> usize {
    if failures_everywhere > GLOBAL_FAILURES {
        ADDRESS_FAILURES_UNDER_ATTACK
    } else {
        ADDRESS_FAILURES
    }
}

/// Whether a client address may attempt a password now, given its failed
/// attempts and those still being checked (against any account) in the last
/// [`WINDOW`], and the number of them that locks it
/// ([`address_failure_limit`]).
pub fn address_gate(failures: &[DateTime<Utc>], limit: usize, now: DateTime<Utc>) -> LoginGate {
    let limit = limit.max(1);
    let mut recent: Vec<DateTime<Utc>> = failures
        .iter()
        .copied()
        .filter(|t| now - *t < WINDOW)
        .collect();
    if recent.len() < limit {
        return LoginGate::Open;
    }
    recent.sort();
    // The lock lifts when enough of the failures have left the window.
    let release = recent[recent.len() - limit] + WINDOW;
    LoginGate::Locked {
        retry_after: release - now,
    }
}

/// Whether a device cookie still exempts its browser from the address's
/// lock, given the start times of the attempts made with it that failed or
/// are being checked: fewer than [`DEVICE_FAILURES`] within [`WINDOW`]. One
/// that has failed that often is treated like any other browser until its
/// failures leave the window (the account's own lock applies throughout).
pub fn device_trusted(failures: &[DateTime<Utc>], now: DateTime<Utc>) -> bool {
    failures.iter().filter(|t| now - **t < WINDOW).count() < DEVICE_FAILURES
}

/// How a successful sign-in is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuccessSettlement {
    /// The failures settled before it began are forgiven, and it does not
    /// count itself.
    Forgives,
    /// It forgives nothing, and counts like a failure until it leaves the
    /// window.
    Counts,
}

/// A success that overlapped no other attempt on the account (none was being
/// checked when it was let through, none was let through or still being
/// checked when it ended) is the person signing in after their own typos: it
/// forgives them.
///
/// A success amid other attempts cannot vouch for them: forgiving would hand
/// whoever sent them a fresh budget while their guesses are still out, and
/// ceasing to count would free a place for one more guess. So it changes
/// nothing for the others, and a flood of attempts checks no more passwords
/// in all, right or wrong, than the budget allows.
pub fn settle_success(overlapped: bool) -> SuccessSettlement {
    if overlapped {
        SuccessSettlement::Counts
    } else {
        SuccessSettlement::Forgives
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 9, 0, 0).unwrap()
    }

    fn mins(m: i64) -> DateTime<Utc> {
        t0() + Duration::minutes(m)
    }

    #[test]
    fn locks_end_exactly_when_they_say() {
        let failures: Vec<DateTime<Utc>> = (0..5).map(mins).collect();
        let end = mins(4) + FIRST_LOCK;
        assert!(matches!(
            account_gate(&failures, end - Duration::milliseconds(1)),
            LoginGate::Locked { .. }
        ));
        assert_eq!(account_gate(&failures, end), LoginGate::Open);
        // An address: failures exactly a window old no longer count.
        let now = mins(30);
        let old: Vec<DateTime<Utc>> = vec![now - WINDOW; ADDRESS_FAILURES];
        assert_eq!(address_gate(&old, ADDRESS_FAILURES, now), LoginGate::Open);
        let recent: Vec<DateTime<Utc>> =
            vec![now - WINDOW + Duration::seconds(1); ADDRESS_FAILURES];
        assert!(matches!(
            address_gate(&recent, ADDRESS_FAILURES, now),
            LoginGate::Locked { .. }
        ));
    }

    #[test]
    fn a_failure_exactly_at_the_streaks_end_still_belongs_to_it() {
        let mut failures: Vec<DateTime<Utc>> = (0..5).map(mins).collect();
        // The lock (one minute after the fifth) plus the window: not past it.
        let edge = mins(4) + FIRST_LOCK + WINDOW;
        failures.push(edge);
        assert!(matches!(
            account_gate(&failures, edge + Duration::seconds(1)),
            LoginGate::Locked { .. }
        ));
        // A moment later, a new streak begins.
        failures.pop();
        failures.push(edge + Duration::seconds(1));
        assert_eq!(
            account_gate(&failures, edge + Duration::seconds(2)),
            LoginGate::Open
        );
    }

    #[test]
    fn four_failures_do_not_lock() {
        let f = [mins(0), mins(1), mins(2), mins(3)];
        assert_eq!(account_gate(&f, mins(3)), LoginGate::Open);
    }

    #[test]
    fn five_failures_in_window_lock_for_a_minute() {
        let f = [mins(0), mins(1), mins(2), mins(3), mins(4)];
        assert_eq!(
            account_gate(&f, mins(4)),
            LoginGate::Locked {
                retry_after: Duration::minutes(1)
            }
        );
        assert_eq!(
            account_gate(&f, mins(4) + Duration::seconds(61)),
            LoginGate::Open
        );
    }

    #[test]
    fn five_failures_spread_over_more_than_the_window_do_not_lock() {
        let f = [mins(0), mins(5), mins(10), mins(15), mins(20)];
        assert_eq!(account_gate(&f, mins(20)), LoginGate::Open);
    }

    #[test]
    fn lock_doubles_with_each_failure_after_it() {
        // Locked at 4 for 1 min; fails at 6 (2 min lock); fails at 9 (4 min lock).
        let f = [
            mins(0),
            mins(1),
            mins(2),
            mins(3),
            mins(4),
            mins(6),
            mins(9),
        ];
        assert_eq!(
            account_gate(&f, mins(9)),
            LoginGate::Locked {
                retry_after: Duration::minutes(4)
            }
        );
    }

    #[test]
    fn lock_is_capped_at_an_hour_and_streak_survives_long_locks() {
        let mut f: Vec<_> = (0..5).map(mins).collect();
        let mut last = mins(4);
        // Each failure right after the previous lock lifts.
        for k in 0..10 {
            let lock = (FIRST_LOCK * 2i32.pow(k)).min(LONGEST_LOCK);
            last = last + lock + Duration::seconds(1);
            f.push(last);
        }
        assert_eq!(
            account_gate(&f, last),
            LoginGate::Locked {
                retry_after: LONGEST_LOCK
            }
        );
    }

    #[test]
    fn a_quiet_period_ends_the_streak() {
        let mut f: Vec<_> = (0..5).map(mins).collect();
        f.push(mins(4 + 1 + 16)); // after lock (1) + window (15) + 1
        assert_eq!(account_gate(&f, mins(21)), LoginGate::Open);
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let gate = LoginGate::Locked {
            retry_after: Duration::milliseconds(1500),
        };
        assert_eq!(gate.retry_after_secs(), Some(2));
        assert_eq!(LoginGate::Open.retry_after_secs(), None);
    }

    #[test]
    fn attempts_being_checked_close_the_gate_like_failures() {
        // Five let through at once, none settled yet: the sixth must wait,
        // whatever the five turn out to be.
        let f = [mins(0); ACCOUNT_FAILURES];
        assert!(matches!(
            account_gate(&f, mins(0)),
            LoginGate::Locked { .. }
        ));
    }

    #[test]
    fn only_a_success_alone_forgives() {
        assert_eq!(settle_success(false), SuccessSettlement::Forgives);
        assert_eq!(settle_success(true), SuccessSettlement::Counts);
    }

    #[test]
    fn address_limit() {
        let f: Vec<_> = (0..49).map(|s| t0() + Duration::seconds(s)).collect();
        assert_eq!(
            address_gate(&f, ADDRESS_FAILURES, t0() + Duration::minutes(1)),
            LoginGate::Open
        );
        let f: Vec<_> = (0..50).map(|s| t0() + Duration::seconds(s)).collect();
        assert_eq!(
            address_gate(&f, ADDRESS_FAILURES, t0() + Duration::minutes(1)),
            LoginGate::Locked {
                retry_after: Duration::minutes(14)
            }
        );
    }

    #[test]
    fn the_global_budget_tightens_the_address_limit_once_exceeded() {
        assert_eq!(address_failure_limit(0), ADDRESS_FAILURES);
        assert_eq!(address_failure_limit(GLOBAL_FAILURES), ADDRESS_FAILURES);
        assert_eq!(
            address_failure_limit(GLOBAL_FAILURES + 1),
            ADDRESS_FAILURES_UNDER_ATTACK
        );
        assert_eq!(
            address_failure_limit(usize::MAX),
            ADDRESS_FAILURES_UNDER_ATTACK
        );
        // The figures the documentation gives.
        assert_eq!(
            (
                GLOBAL_FAILURES,
                ADDRESS_FAILURES_UNDER_ATTACK,
                DEVICE_FAILURES
            ),
            (250, 10, 5)
        );
    }

    #[test]
    fn a_tighter_limit_locks_sooner_and_lifts_when_enough_failures_leave_the_window() {
        let limit = ADDRESS_FAILURES_UNDER_ATTACK;
        // Failures at 0..limit-1 minutes.
        let f: Vec<_> = (0..limit as i64).map(mins).collect();
        let now = mins(limit as i64);
        assert_eq!(address_gate(&f[1..], limit, now), LoginGate::Open);
        // The lock lifts when the oldest of the last `limit` leaves the window.
        assert_eq!(
            address_gate(&f, limit, now),
            LoginGate::Locked {
                retry_after: mins(0) + WINDOW - now
            }
        );
        assert_eq!(address_gate(&f, limit, mins(0) + WINDOW), LoginGate::Open);
        // With more than `limit` failures, the lock lasts until the surplus
        // ones have left as well.
        let mut more = f.clone();
        more.push(mins(limit as i64));
        assert_eq!(
            address_gate(&more, limit, mins(0) + WINDOW),
            LoginGate::Locked {
                retry_after: Duration::minutes(1)
            }
        );
        // Order does not matter.
        more.reverse();
        assert_eq!(
            address_gate(&more, limit, mins(0) + WINDOW),
            LoginGate::Locked {
                retry_after: Duration::minutes(1)
            }
        );
        // A limit of nothing still needs one failure to lock.
        assert_eq!(address_gate(&[], 0, now), LoginGate::Open);
        assert!(matches!(
            address_gate(&[mins(0)], 0, now),
            LoginGate::Locked { .. }
        ));
    }

    #[test]
    fn a_device_is_trusted_until_its_own_failures_use_up_its_budget() {
        let now = mins(20);
        let four: Vec<_> = (0..DEVICE_FAILURES as i64 - 1)
            .map(|m| mins(10 + m))
            .collect();
        assert!(device_trusted(&[], now));
        assert!(device_trusted(&four, now));
        let mut five = four.clone();
        five.push(mins(19));
        assert!(!device_trusted(&five, now));
        // Failures a whole window old no longer count; a moment younger do.
        let edge = vec![now - WINDOW; DEVICE_FAILURES];
        assert!(device_trusted(&edge, now));
        let inside = vec![now - WINDOW + Duration::milliseconds(1); DEVICE_FAILURES];
        assert!(!device_trusted(&inside, now));
    }
}
