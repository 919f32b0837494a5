//! The password-hashing slots: a fixed set of argon2 working memories, one
//! per slot, allocated once and reused, and the queue in front of them.
//!
//! Memory: each check needs 19 MiB. Allocated afresh for every check, those
//! blocks end up kept by the allocator (one cache per thread arena), and a
//! flood of sign-ins leaves the process holding hundreds of MiB for good.
//! Here a slot *is* its memory: there are never more than `slots` of them,
//! made the first time they are needed and never freed.
//!
//! Fairness: every request for a slot says who it is for. A client (an
//! address, or a user signing in from a browser that has signed in as them
//! before) may have one check queued or running at a time; a second is
//! refused at once. The queue is short and ordered: administrators' work
//! first, then returning browsers, then addresses by how often lately their
//! checks have failed or they have been turned away, least first, first come
//! first served among equals. When it is full, a newcomer takes the place
//! of the worst-placed waiter if it ranks at least twice as well, and is
//! turned away otherwise. So a flood queues behind everyone else and is what
//! gets shed, while someone new, or someone who has not been failing, goes
//! to the front.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use argon2::Block;
use tokio::sync::oneshot;

/// One slot's working memory.
pub type Memory = Box<[Block]>;

/// How many checks one client may have queued or running at once.
pub const AT_ONCE_PER_CLIENT: usize = 1;
/// Waiting places in the queue per slot.
pub const QUEUE_PER_SLOT: usize = 4;
/// The fewest waiting places, however few the slots.
pub const MIN_QUEUE: usize = 4;
/// A client's strikes (failed checks, refusals) are forgotten this long
/// after its last one.
pub const STRIKES_REMEMBERED: Duration = Duration::from_secs(15 * 60);
/// Clients remembered at most; beyond it, new ones share one entry.
pub const MAX_CLIENTS: usize = 65_536;
/// The longest anyone waits for a slot before being told to come back.
pub const LONGEST_WAIT: Duration = Duration::from_secs(10);

/// Whom a check is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    /// Work an administrator or the command line asked for (setting a
    /// password): never refused, always first.
    Trusted,
    /// A user signing in from a browser that has signed in as them before.
    Device { username: String },
    /// Anyone else, by client address (see [`address_key`]).
    Address { key: String },
}

/// Why a check was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The client already has a check queued or running.
    OneAtATime,
    /// The queue is full of others who rank as well or better.
    Full,
}

/// The key an address is counted under: an IPv4 address as it is, an IPv6
/// address by its /64 network (one subscriber's allocation, which its owner
/// can fill with as many addresses as they like).
pub fn address_key(addr: &str) -> String {
    match addr.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.to_string(),
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        Err(_) => addr.to_owned(),
    }
}

/// The kind of a request, as far as the queue's order goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    Trusted,
    Device,
    Address,
}

impl Lane {
    fn of(who: &Who) -> Self {
        match who {
            Who::Trusted => Lane::Trusted,
            Who::Device { .. } => Lane::Device,
            Who::Address { .. } => Lane::Address,
        }
    }
}

/// Where a request waits: lower ranks first. Administrators' work is 0,
/// returning browsers 1, addresses 2 and up by their recent strikes. Worked
/// out afresh whenever the queue is looked at, so an address that keeps
/// being turned away while it waits drops back.
fn rank(lane: Lane, strikes: u32) -> u32 {
    match lane {
        Lane::Trusted => 0,
        Lane::Device => 1,
        Lane::Address => strikes.saturating_add(2),
    }
}

fn client_id(who: &Who) -> Option<String> {
    match who {
        Who::Trusted => None,
        Who::Device { username } => Some(format!("device {username}")),
        Who::Address { key } => Some(format!("address {key}")),
    }
}

/// The entry clients share once [`MAX_CLIENTS`] are remembered.
const OVERFLOW: &str = "overflow";

#[derive(Debug, Default)]
struct Client {
    in_flight: usize,
    /// Failed checks and refusals, since the streak began.
    strikes: u32,
    last_strike: Option<Instant>,
}

impl Client {
    fn recent_strikes(&self, now: Instant) -> u32 {
        match self.last_strike {
            Some(at) if now.saturating_duration_since(at) < STRIKES_REMEMBERED => self.strikes,
            _ => 0,
        }
    }

    fn strike(&mut self, now: Instant) {
        self.strikes = self.recent_strikes(now).saturating_add(1);
        self.last_strike = Some(now);
    }

    fn forgettable(&self, now: Instant) -> bool {
        self.in_flight == 0 && self.recent_strikes(now) == 0
    }
}

/// What a waiter is handed.
enum Grant {
    /// A slot's memory, made before.
    Memory(Memory),
    /// A slot whose memory has not been made yet: the waiter makes it.
    Fresh,
}

/// One place in the queue.
struct Waiter {
    lane: Lane,
    client: Option<String>,
    /// `Some` once ready to be handed a slot.
    tx: Option<oneshot::Sender<Grant>>,
}

#[derive(Default)]
struct State {
    /// Memories not in use.
    idle: Vec<Memory>,
    /// Slots handed out or made so far (made, or granted as `Fresh`).
    made: usize,
    /// Waiters by order of arrival.
    queue: BTreeMap<u64, Waiter>,
    clients: HashMap<String, Client>,
    next: u64,
    last_prune: Option<Instant>,
}

impl State {
    fn strikes(&self, client: Option<&String>, now: Instant) -> u32 {
        client
            .and_then(|id| self.clients.get(id))
            .map_or(0, |c| c.recent_strikes(now))
    }

    /// Each waiter's place: its rank, then its arrival.
    fn places(&self, now: Instant) -> impl Iterator<Item = ((u32, u64), &Waiter)> {
        self.queue.iter().map(move |(seq, w)| {
            let strikes = self.strikes(w.client.as_ref(), now);
            ((rank(w.lane, strikes), *seq), w)
        })
    }
}

pub struct Slots {
    slots: usize,
    capacity: usize,
    /// The blocks in one memory.
    blocks: usize,
    state: Mutex<State>,
}

impl Slots {
    pub fn new(slots: usize, blocks: usize) -> Self {
        let slots = slots.max(1);
        Self {
            slots,
            capacity: (slots * QUEUE_PER_SLOT).max(MIN_QUEUE),
            blocks,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing in here can leave the state half-written, so a panic
        // elsewhere while it was held does not make it unusable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn make(&self) -> Memory {
        vec![Block::new(); self.blocks].into_boxed_slice()
    }

    /// Takes a place in the queue for `who`, or says why not. Decides in
    /// memory, before anything else is done for the request.
    pub fn enter(self: &Arc<Self>, who: Who) -> Result<Ticket, Refusal> {
        let now = Instant::now();
        let mut st = self.lock();
        let client = client_id(&who).map(|id| self.client_key(&mut st, id, now));
        let lane = Lane::of(&who);
        let busy = client
            .as_ref()
            .and_then(|id| st.clients.get(id))
            .is_some_and(|c| c.in_flight >= AT_ONCE_PER_CLIENT);
        let rank = rank(lane, st.strikes(client.as_ref(), now));
        let refusal = if busy {
            Some(Refusal::OneAtATime)
        } else if lane != Lane::Trusted && st.queue.len() >= self.capacity {
            match st.places(now).map(|(place, _)| place).max() {
                // The worst-placed waiter gives way to a newcomer that ranks
                // at least twice as well (its sender is dropped, which tells
                // it so): someone new, or who has not been failing, displaces
                // a flood, but a flood does not churn its own places.
                Some((worst, seq)) if rank.saturating_mul(2) <= worst => {
                    st.queue.remove(&seq);
                    None
                }
                _ => Some(Refusal::Full),
            }
        } else {
            None
        };
        if let Some(refusal) = refusal {
            // Being turned away counts against the client like a failure: a
            // flood ranks behind everyone else the sooner.
            if let Some(id) = &client {
                st.clients.entry(id.clone()).or_default().strike(now);
            }
            return Err(refusal);
        }
        st.next += 1;
        let place = st.next;
        st.queue.insert(
            place,
            Waiter {
                lane,
                client: client.clone(),
                tx: None,
            },
        );
        if let Some(id) = &client {
            st.clients.entry(id.clone()).or_default().in_flight += 1;
        }
        Ok(Ticket {
            slots: Arc::clone(self),
            place,
            client,
            rx: None,
        })
    }

    /// The key `id` is counted under: itself, or the shared overflow entry
    /// when too many clients are remembered already.
    fn client_key(&self, st: &mut State, id: String, now: Instant) -> String {
        if st.clients.contains_key(&id) || st.clients.len() < MAX_CLIENTS {
            return id;
        }
        // Forget those with nothing in flight and no recent failure, at most
        // once a second (it walks every entry).
        if st
            .last_prune
            .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1))
        {
            st.last_prune = Some(now);
            st.clients.retain(|_, c| !c.forgettable(now));
        }
        if st.clients.len() < MAX_CLIENTS {
            id
        } else {
            OVERFLOW.to_owned()
        }
    }

    /// Hands free slots to the best-placed waiters that are ready.
    fn dispatch(&self, st: &mut State) {
        loop {
            if st.idle.is_empty() && st.made >= self.slots {
                return;
            }
            let now = Instant::now();
            let Some((_, seq)) = st
                .places(now)
                .filter(|(_, w)| w.tx.is_some())
                .map(|(place, _)| place)
                .min()
            else {
                return;
            };
            let Some(Waiter { tx: Some(tx), .. }) = st.queue.remove(&seq) else {
                return;
            };
            let grant = match st.idle.pop() {
                Some(m) => Grant::Memory(m),
                None => {
                    st.made += 1;
                    Grant::Fresh
                }
            };
            // A waiter gone meanwhile: the slot goes back and to the next.
            if let Err(grant) = tx.send(grant) {
                Self::put_back(st, grant);
            }
        }
    }

    fn put_back(st: &mut State, grant: Grant) {
        match grant {
            Grant::Memory(m) => st.idle.push(m),
            Grant::Fresh => st.made = st.made.saturating_sub(1),
        }
    }

    fn release(&self, memory: Memory) {
        let mut st = self.lock();
        st.idle.push(memory);
        self.dispatch(&mut st);
    }

    /// How many slots' memories have been made.
    #[cfg(test)]
    fn made(&self) -> usize {
        self.lock().made
    }
}

/// A place in the queue; dropping it gives the place (and the client's
/// turn) back.
pub struct Ticket {
    slots: Arc<Slots>,
    place: u64,
    client: Option<String>,
    rx: Option<oneshot::Receiver<Grant>>,
}

impl Ticket {
    /// Waits for a slot. `Err` when the place was given to a better-placed
    /// newcomer, or after [`LONGEST_WAIT`].
    pub async fn slot(&mut self) -> Result<Lease, Refusal> {
        let rx = {
            let mut st = self.slots.lock();
            let Some(waiter) = st.queue.get_mut(&self.place) else {
                return Err(Refusal::Full);
            };
            let (tx, rx) = oneshot::channel();
            waiter.tx = Some(tx);
            self.slots.dispatch(&mut st);
            rx
        };
        let rx = self.rx.insert(rx);
        let grant = match tokio::time::timeout(LONGEST_WAIT, rx).await {
            Ok(Ok(grant)) => grant,
            // Passed over (the sender dropped), or waited too long.
            Ok(Err(_)) | Err(_) => {
                let slots = Arc::clone(&self.slots);
                let mut st = slots.lock();
                self.leave_queue(&mut st);
                slots.dispatch(&mut st);
                return Err(Refusal::Full);
            }
        };
        self.rx = None;
        let memory = match grant {
            Grant::Memory(m) => m,
            Grant::Fresh => self.slots.make(),
        };
        Ok(Lease {
            slots: Arc::clone(&self.slots),
            memory: Some(memory),
        })
    }

    /// Counts a failed check against the client, which places its next
    /// requests further back.
    pub fn failed(&self) {
        let Some(id) = &self.client else { return };
        let mut st = self.slots.lock();
        if let Some(c) = st.clients.get_mut(id) {
            c.strike(Instant::now());
        }
    }
}

impl Ticket {
    /// Gives up the place, and a slot handed over but never taken up.
    fn leave_queue(&mut self, st: &mut State) {
        st.queue.remove(&self.place);
        if let Some(mut rx) = self.rx.take() {
            rx.close();
            if let Ok(grant) = rx.try_recv() {
                Slots::put_back(st, grant);
            }
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let slots = Arc::clone(&self.slots);
        let mut st = slots.lock();
        self.leave_queue(&mut st);
        if let Some(id) = &self.client {
            let now = Instant::now();
            if let Some(c) = st.clients.get_mut(id) {
                c.in_flight = c.in_flight.saturating_sub(1);
                if c.forgettable(now) {
                    st.clients.remove(id);
                }
            }
        }
        slots.dispatch(&mut st);
    }
}

/// A slot in use: its memory goes back to the pool, and to the next waiter,
/// when the lease ends (also if the work panicked).
pub struct Lease {
    slots: Arc<Slots>,
    memory: Option<Memory>,
}

impl Lease {
    pub fn memory(&mut self) -> &mut [Block] {
        self.memory.as_deref_mut().unwrap_or_default()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(m) = self.memory.take() {
            self.slots.release(m);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::future::Future;

    use super::*;

    fn addr(key: &str) -> Who {
        Who::Address { key: key.into() }
    }

    /// An address that has failed `n` times.
    fn failing(slots: &Arc<Slots>, key: &str, n: usize) {
        for _ in 0..n {
            slots.enter(addr(key)).unwrap().failed();
        }
    }

    /// Whether `fut` is still waiting after a moment.
    async fn still_waiting<F: Future + Unpin>(fut: F) -> bool {
        tokio::time::timeout(Duration::from_millis(5), fut)
            .await
            .is_err()
    }

    #[test]
    fn ipv6_addresses_count_by_their_64_network() {
        assert_eq!(address_key("192.0.2.7"), "192.0.2.7");
        assert_eq!(address_key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(
            address_key("2001:db8:1:2:aaaa::1"),
            address_key("2001:db8:1:2:ffff::9")
        );
        assert_ne!(
            address_key("2001:db8:1:2::1"),
            address_key("2001:db8:1:3::1")
        );
        assert_eq!(address_key("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(address_key("unknown"), "unknown");
    }

    #[test]
    fn ranks() {
        assert_eq!(rank(Lane::Trusted, 9), 0);
        assert_eq!(rank(Lane::Device, 9), 1);
        assert_eq!(rank(Lane::Address, 0), 2);
        assert_eq!(rank(Lane::Address, 3), 5);
        assert_eq!(rank(Lane::Address, u32::MAX), u32::MAX);
        assert_eq!(Lane::of(&Who::Trusted), Lane::Trusted);
        assert_eq!(
            Lane::of(&Who::Device {
                username: "u".into()
            }),
            Lane::Device
        );
        assert_eq!(Lane::of(&addr("a")), Lane::Address);
    }

    #[test]
    fn queue_length() {
        assert_eq!(Slots::new(0, 8).slots, 1);
        assert_eq!(Slots::new(1, 8).capacity, MIN_QUEUE);
        assert_eq!(Slots::new(3, 8).capacity, 3 * QUEUE_PER_SLOT);
    }

    #[tokio::test]
    async fn one_check_at_a_time_per_client() {
        let slots = Arc::new(Slots::new(2, 8));
        let first = slots.enter(addr("a")).unwrap();
        assert_eq!(slots.enter(addr("a")).err(), Some(Refusal::OneAtATime));
        // Another client, and the trusted lane, are not affected.
        let _b = slots.enter(addr("b")).unwrap();
        let _t1 = slots.enter(Who::Trusted).unwrap();
        let _t2 = slots.enter(Who::Trusted).unwrap();
        let device = || Who::Device {
            username: "erin".into(),
        };
        let _d = slots.enter(device()).unwrap();
        assert_eq!(slots.enter(device()).err(), Some(Refusal::OneAtATime));
        drop(first);
        let _again = slots.enter(addr("a")).unwrap();
    }

    #[tokio::test]
    async fn memories_are_made_once_and_reused() {
        let slots = Arc::new(Slots::new(2, 8));
        for _ in 0..10 {
            let mut t = slots.enter(addr("a")).unwrap();
            let mut lease = t.slot().await.unwrap();
            assert_eq!(lease.memory().len(), 8);
        }
        assert_eq!(slots.made(), 1);
        let mut a = slots.enter(addr("a")).unwrap();
        let mut b = slots.enter(addr("b")).unwrap();
        let mut c = slots.enter(addr("c")).unwrap();
        let la = a.slot().await.unwrap();
        let _lb = b.slot().await.unwrap();
        // Two slots only: the third waits until one is given back.
        let mut waiting = Box::pin(c.slot());
        assert!(still_waiting(waiting.as_mut()).await);
        drop(la);
        assert!(waiting.await.is_ok());
        assert_eq!(slots.made(), 2);
    }

    #[tokio::test]
    async fn a_full_queue_pushes_out_the_worst_placed_for_a_newcomer_who_ranks_better() {
        let slots = Arc::new(Slots::new(1, 8));
        let mut running = slots.enter(addr("busy")).unwrap();
        let lease = running.slot().await.unwrap();
        for i in 0..MIN_QUEUE {
            failing(&slots, &format!("flood{i}"), 2);
        }
        failing(&slots, "late", 2);
        failing(&slots, "worse", 3);
        failing(&slots, "nearly", 1);
        // Addresses that have failed twice (rank 4) fill the queue.
        let mut flood = Vec::new();
        for i in 0..MIN_QUEUE {
            flood.push(slots.enter(addr(&format!("flood{i}"))).unwrap());
        }
        // One more like them, or worse, is turned away; so is one that
        // ranks better (3), but not twice as well.
        assert_eq!(slots.enter(addr("late")).err(), Some(Refusal::Full));
        assert_eq!(slots.enter(addr("worse")).err(), Some(Refusal::Full));
        assert_eq!(slots.enter(addr("nearly")).err(), Some(Refusal::Full));
        // An address that has not failed (2) takes the place of the last
        // comer among the worst placed.
        let mut fresh = slots.enter(addr("fresh")).unwrap();
        let mut last = flood.pop().unwrap();
        assert_eq!(last.slot().await.err(), Some(Refusal::Full));
        drop(last);
        // And is served before every one of them.
        let mut others: Vec<_> = flood.iter_mut().map(|t| Box::pin(t.slot())).collect();
        for w in &mut others {
            assert!(still_waiting(w.as_mut()).await);
        }
        let mut mine = Box::pin(fresh.slot());
        assert!(still_waiting(mine.as_mut()).await);
        drop(lease);
        let lease = mine.await.unwrap();
        for w in &mut others {
            assert!(still_waiting(w.as_mut()).await);
        }
        // Then the rest, first come first served.
        drop(lease);
        let first = others[0].as_mut().await.unwrap();
        assert!(still_waiting(others[1].as_mut()).await);
        drop(first);
        assert!(others[1].as_mut().await.is_ok());
    }

    #[tokio::test]
    async fn fewer_strikes_go_first() {
        let slots = Arc::new(Slots::new(1, 8));
        let mut running = slots.enter(addr("busy")).unwrap();
        let lease = running.slot().await.unwrap();
        failing(&slots, "many", 3);
        failing(&slots, "few", 2);
        let mut many = slots.enter(addr("many")).unwrap();
        let mut few = slots.enter(addr("few")).unwrap();
        let mut m = Box::pin(many.slot());
        let mut f = Box::pin(few.slot());
        assert!(still_waiting(m.as_mut()).await);
        assert!(still_waiting(f.as_mut()).await);
        drop(lease);
        let lease = f.await.unwrap();
        assert!(still_waiting(m.as_mut()).await);
        drop(lease);
        assert!(m.await.is_ok());
    }

    #[tokio::test]
    async fn returning_browsers_rank_ahead_of_addresses_and_admin_work_ahead_of_both() {
        let slots = Arc::new(Slots::new(1, 8));
        let mut running = slots.enter(addr("busy")).unwrap();
        let lease = running.slot().await.unwrap();
        let mut plain = slots.enter(addr("fresh")).unwrap();
        let mut device = slots
            .enter(Who::Device {
                username: "erin".into(),
            })
            .unwrap();
        let mut admin = slots.enter(Who::Trusted).unwrap();
        let mut p = Box::pin(plain.slot());
        let mut d = Box::pin(device.slot());
        let mut a = Box::pin(admin.slot());
        assert!(still_waiting(p.as_mut()).await);
        assert!(still_waiting(d.as_mut()).await);
        assert!(still_waiting(a.as_mut()).await);
        drop(lease);
        let lease = a.await.unwrap();
        assert!(still_waiting(d.as_mut()).await);
        drop(lease);
        let lease = d.await.unwrap();
        assert!(still_waiting(p.as_mut()).await);
        drop(lease);
        assert!(p.await.is_ok());
    }

    #[tokio::test]
    async fn the_trusted_lane_is_never_turned_away() {
        let slots = Arc::new(Slots::new(1, 8));
        let mut queued = Vec::new();
        for i in 0..MIN_QUEUE {
            queued.push(slots.enter(addr(&format!("a{i}"))).unwrap());
        }
        assert_eq!(slots.enter(addr("one-more")).err(), Some(Refusal::Full));
        for _ in 0..3 {
            queued.push(slots.enter(Who::Trusted).unwrap());
        }
        // Nobody was pushed out for it.
        assert_eq!(slots.lock().queue.len(), MIN_QUEUE + 3);
    }

    #[tokio::test]
    async fn a_slot_handed_to_a_waiter_that_has_gone_goes_to_the_next() {
        let slots = Arc::new(Slots::new(1, 8));
        let mut running = slots.enter(addr("busy")).unwrap();
        let lease = running.slot().await.unwrap();
        let mut gone = slots.enter(addr("gone")).unwrap();
        {
            // It starts waiting, then stops (its request was cancelled).
            let mut fut = Box::pin(gone.slot());
            assert!(still_waiting(fut.as_mut()).await);
        }
        let mut next = slots.enter(addr("next")).unwrap();
        // The slot is handed to the first waiter, which never takes it up...
        drop(lease);
        let mut n = Box::pin(next.slot());
        assert!(still_waiting(n.as_mut()).await);
        // ...until it is dropped, when it goes to the next.
        drop(gone);
        assert!(n.await.is_ok());
        assert_eq!(slots.made(), 1);
    }

    #[tokio::test]
    async fn clients_are_forgotten_when_idle_and_blameless() {
        let slots = Arc::new(Slots::new(1, 8));
        drop(slots.enter(addr("ok")).unwrap());
        failing(&slots, "bad", 1);
        let st = slots.lock();
        assert!(!st.clients.contains_key("address ok"));
        assert_eq!(st.clients["address bad"].strikes, 1);
    }

    #[tokio::test]
    async fn being_turned_away_places_a_client_further_back_even_while_it_waits() {
        let slots = Arc::new(Slots::new(1, 8));
        let mut running = slots.enter(addr("busy")).unwrap();
        let lease = running.slot().await.unwrap();
        // Two addresses wait; the first to come then tries again at once
        // and is turned away.
        let mut pushy = slots.enter(addr("pushy")).unwrap();
        let mut calm = slots.enter(addr("calm")).unwrap();
        assert_eq!(slots.enter(addr("pushy")).err(), Some(Refusal::OneAtATime));
        let mut p = Box::pin(pushy.slot());
        let mut c = Box::pin(calm.slot());
        assert!(still_waiting(p.as_mut()).await);
        assert!(still_waiting(c.as_mut()).await);
        drop(lease);
        let calm_first = c.await.unwrap();
        assert!(still_waiting(p.as_mut()).await);
        drop(calm_first);
        assert!(p.await.is_ok());
        // A refusal for a full queue counts too, also for a newcomer.
        let slots = Arc::new(Slots::new(1, 8));
        let _queued: Vec<_> = (0..MIN_QUEUE)
            .map(|i| slots.enter(addr(&format!("q{i}"))).unwrap())
            .collect();
        assert_eq!(slots.enter(addr("new")).err(), Some(Refusal::Full));
        assert_eq!(slots.lock().clients["address new"].strikes, 1);
    }

    #[tokio::test]
    async fn a_full_queue_of_equals_turns_the_newcomer_away() {
        let slots = Arc::new(Slots::new(1, 8));
        let _queued: Vec<_> = (0..MIN_QUEUE)
            .map(|i| slots.enter(addr(&format!("q{i}"))).unwrap())
            .collect();
        assert_eq!(slots.enter(addr("equal")).err(), Some(Refusal::Full));
        // Its strike now places it behind them: still turned away.
        assert_eq!(slots.enter(addr("equal")).err(), Some(Refusal::Full));
        assert_eq!(slots.lock().queue.len(), MIN_QUEUE);
        // A returning browser ranks better than any address.
        let _device = slots
            .enter(Who::Device {
                username: "erin".into(),
            })
            .unwrap();
        assert_eq!(slots.lock().queue.len(), MIN_QUEUE);
    }

    #[test]
    fn strikes_are_forgotten_after_a_while() {
        let now = Instant::now();
        let mut c = Client {
            in_flight: 0,
            strikes: 4,
            last_strike: Some(now),
        };
        assert_eq!(c.recent_strikes(now), 4);
        assert_eq!(
            c.recent_strikes(now + STRIKES_REMEMBERED - Duration::from_millis(1)),
            4
        );
        assert_eq!(c.recent_strikes(now + STRIKES_REMEMBERED), 0);
        assert!(!c.forgettable(now));
        assert!(c.forgettable(now + STRIKES_REMEMBERED));
        // A strike after a quiet spell starts the count again.
        c.strike(now + STRIKES_REMEMBERED);
        assert_eq!(c.strikes, 1);
        c.strike(now + STRIKES_REMEMBERED);
        assert_eq!(c.strikes, 2);
        let busy = Client {
            in_flight: 1,
            ..Client::default()
        };
        assert!(!busy.forgettable(now));
    }
}
