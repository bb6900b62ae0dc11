//! The ready instances of one revision, and how a request gets one.
//!
//! A request holds an [`InFlight`] guard for as long as the instance works on it (until the
//! response body ends). That count is exact because every request passes through here; it
//! drives the least-in-flight pick, the containerConcurrency limit and draining.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use http::uri::Authority;
use tokio::sync::Notify;

use crate::metrics::RevisionMetrics;
use crate::upstream::Pool;
use tokio::time::Instant;

/// One instance the proxy may send requests to.
#[derive(Debug)]
pub struct Endpoint {
    /// Runtime id of the instance.
    pub id: String,
    /// Instance name, for logs and error messages.
    pub name: String,
    /// Where to dial it.
    pub addr: SocketAddr,
    /// `addr` as a URI authority, made once rather than per request.
    pub authority: Authority,
    /// Idle HTTP/1.1 connections to it.
    pub connections: Arc<Pool>,
    /// Requests sent to it whose responses have not finished.
    in_flight: AtomicUsize,
    /// Signalled when `in_flight` drops to zero.
    idle: Notify,
}

impl Endpoint {
    pub fn new(id: impl Into<String>, name: impl Into<String>, addr: SocketAddr) -> Arc<Self> {
        Arc::new(Self {
            id: id.into(),
            name: name.into(),
            authority: Authority::try_from(addr.to_string()).expect("a socket address is a valid authority"),
            addr,
            connections: Arc::default(),
            in_flight: AtomicUsize::new(0),
            idle: Notify::new(),
        })
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Reserves a slot when fewer than `limit` requests are in flight (0 = no limit).
    fn try_reserve(&self, limit: usize) -> bool {
        let mut current = self.in_flight.load(Ordering::Acquire);
        loop {
            if limit != 0 && current >= limit {
                return false;
            }
            match self
                .in_flight
                .compare_exchange_weak(current, current + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
    }

    /// Waits until no request is in flight, or `deadline` passes; returns whether it is idle.
    /// The caller must already have removed the endpoint from its revision so no new request
    /// arrives.
    pub async fn drained(&self, deadline: Instant) -> bool {
        loop {
            let idle = self.idle.notified();
            if self.in_flight() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                return self.in_flight() == 0;
            }
        }
    }
}

/// A request's hold on one endpoint; released when dropped.
#[derive(Debug)]
pub struct InFlight {
    endpoint: Arc<Endpoint>,
    revision: Arc<RevisionEndpoints>,
    /// When the slot was taken: its time in flight counts toward the revision's busy time.
    since: Instant,
}

impl InFlight {
    pub fn endpoint(&self) -> &Arc<Endpoint> {
        &self.endpoint
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // Only the part since the last sample: before it, a sample saw this request in flight.
        let sampled =
            self.revision.created + Duration::from_micros(self.revision.sampled_at_micros.load(Ordering::Relaxed));
        let held = Instant::now().saturating_duration_since(self.since.max(sampled));
        self.revision
            .busy_micros
            .fetch_add(u64::try_from(held.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
        if self.endpoint.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.endpoint.idle.notify_waiters();
        }
        if self.revision.container_concurrency != 0 {
            // One slot freed up: the request that has waited longest takes it (tokio's
            // `notify_one` wakes waiters in the order they began waiting, and passes the wake
            // on when that waiter has gone). Waking them all would have them race for it.
            self.revision.changed.notify_one();
        }
    }
}

/// Why a request got no instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcquireError {
    /// Too many requests are already waiting for this revision.
    QueueFull,
    /// No instance had capacity before the deadline.
    Timeout,
    /// The revision was removed while the request waited: nothing will serve it here.
    Closed,
}

/// The instances of one revision that may take requests.
#[derive(Debug)]
pub struct RevisionEndpoints {
    /// Revision name.
    pub revision: String,
    /// Service name.
    pub service: String,
    /// The revision's request timeout (timeoutSeconds).
    pub timeout: Duration,
    /// Whether instances speak HTTP/2 cleartext.
    pub h2c: bool,
    /// Most requests per instance at once; 0 = unlimited.
    pub container_concurrency: usize,
    /// Ready instances. A std lock: held only to copy or edit the list, never across await.
    ready: RwLock<Vec<Arc<Endpoint>>>,
    /// Signalled when instances are added or capacity frees up.
    changed: Notify,
    /// Requests currently waiting for capacity.
    waiting: AtomicUsize,
    /// Set when the revision is gone: waiting requests leave at once instead of at timeout.
    closed: AtomicBool,
    /// Rotates the starting point of the pick so ties spread over instances.
    next: AtomicUsize,
    /// Requests that got a slot, ever (for the requests-per-second metric).
    served: AtomicU64,
    /// Time requests that finished spent in flight since the sample before they finished, in
    /// microseconds, summed ever: over an interval between samples, the average concurrency
    /// of the requests that ended in it, which a sample of what is in flight cannot see.
    busy_micros: AtomicU64,
    /// When the autoscaler last sampled the revision, in microseconds after `created`.
    sampled_at_micros: AtomicU64,
    created: Instant,
    /// Signalled when a request has to wait: the autoscaler reacts at once instead of at its
    /// next tick (a revision at zero must not wait for a polling interval).
    demand: OnceLock<Arc<Notify>>,
    /// This revision's metric handles, looked up once instead of per request.
    pub(crate) metrics: OnceLock<RevisionMetrics>,
}

impl RevisionEndpoints {
    pub fn new(service: &str, revision: &str, timeout: Duration, h2c: bool, container_concurrency: u32) -> Arc<Self> {
        Arc::new(Self {
            revision: revision.to_string(),
            service: service.to_string(),
            timeout,
            h2c,
            container_concurrency: container_concurrency as usize,
            ready: RwLock::new(Vec::new()),
            changed: Notify::new(),
            waiting: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            next: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            busy_micros: AtomicU64::new(0),
            sampled_at_micros: AtomicU64::new(0),
            created: Instant::now(),
            demand: OnceLock::new(),
            metrics: OnceLock::new(),
        })
    }

    /// Makes an instance available; waiting requests are woken.
    pub fn add(&self, endpoint: Arc<Endpoint>) {
        {
            let mut ready = self.ready.write().unwrap_or_else(|e| e.into_inner());
            if ready.iter().any(|e| e.id == endpoint.id) {
                return;
            }
            ready.push(endpoint);
        }
        self.changed.notify_waiters();
    }

    /// Stops sending new requests to an instance; returns it so the caller can drain it.
    pub fn remove(&self, id: &str) -> Option<Arc<Endpoint>> {
        let mut ready = self.ready.write().unwrap_or_else(|e| e.into_inner());
        let index = ready.iter().position(|e| e.id == id)?;
        Some(ready.remove(index))
    }

    /// Ready instances.
    pub fn endpoints(&self) -> Vec<Arc<Endpoint>> {
        self.ready.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn ready_count(&self) -> usize {
        self.ready.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Closes keep-alive connections to the ready instances that sat idle too long.
    pub fn close_idle_connections(&self) {
        for endpoint in self.ready.read().unwrap_or_else(|e| e.into_inner()).iter() {
            endpoint.connections.close_expired();
        }
    }

    /// Ends this revision's service: requests waiting now and later get [`AcquireError::Closed`].
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.changed.notify_waiters();
    }

    /// Whether [`RevisionEndpoints::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Requests waiting for capacity now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    /// Requests being handled by the ready instances.
    pub fn in_flight(&self) -> usize {
        self.ready
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|e| e.in_flight())
            .sum()
    }

    /// Requests in flight on instances plus those waiting: the revision's concurrency.
    pub fn demand(&self) -> usize {
        self.in_flight() + self.waiting()
    }

    /// Requests that got a slot since the revision was created.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// Time finished requests spent in flight since the sample before each finished, summed
    /// ever (see [`RevisionEndpoints::sampled`]).
    pub fn busy(&self) -> Duration {
        Duration::from_micros(self.busy_micros.load(Ordering::Relaxed))
    }

    /// Marks a sample of the revision's demand taken at `at`: a request finishing after it
    /// counts only its time in flight from then on toward [`RevisionEndpoints::busy`], since
    /// the sample saw it in flight. The average concurrency between two samples is then what
    /// was in flight at the second plus the busy time between them over the interval.
    pub fn sampled(&self, at: Instant) {
        let micros = at.saturating_duration_since(self.created).as_micros();
        self.sampled_at_micros
            .store(u64::try_from(micros).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Sets the signal raised whenever a request has to wait for capacity.
    pub fn on_demand(&self, signal: Arc<Notify>) {
        let _ = self.demand.set(signal);
    }

    /// Takes a slot on the least loaded instance that has one, without waiting.
    pub fn try_acquire(self: &Arc<Self>) -> Option<InFlight> {
        let ready = self.ready.read().unwrap_or_else(|e| e.into_inner());
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        // Retry a few times: another request may take the chosen slot between pick and reserve.
        for _ in 0..4 {
            let loads = ready.iter().map(|e| e.in_flight());
            let index = pick_least_loaded(loads, self.container_concurrency, start)?;
            let endpoint = &ready[index];
            if endpoint.try_reserve(self.container_concurrency) {
                self.served.fetch_add(1, Ordering::Relaxed);
                return Some(InFlight {
                    endpoint: endpoint.clone(),
                    revision: self.clone(),
                    since: Instant::now(),
                });
            }
        }
        None
    }

    /// Takes a slot at once, unless requests are already waiting for one: a new request never
    /// overtakes those queued before it.
    pub fn try_acquire_in_turn(self: &Arc<Self>) -> Option<InFlight> {
        if self.waiting.load(Ordering::Acquire) > 0 {
            return None;
        }
        self.try_acquire()
    }

    /// Takes a slot, waiting until `deadline` for an instance with capacity, behind the
    /// requests that began waiting earlier. At most `max_waiting` requests wait at once.
    pub async fn acquire(self: &Arc<Self>, deadline: Instant, max_waiting: usize) -> Result<InFlight, AcquireError> {
        if let Some(slot) = self.try_acquire_in_turn() {
            return Ok(slot);
        }
        if self.is_closed() {
            return Err(AcquireError::Closed);
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= max_waiting {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(AcquireError::QueueFull);
        }
        let _waiting = WaitingGuard(&self.waiting);
        if let Some(signal) = self.demand.get() {
            signal.notify_one();
        }
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Register before checking, so a change between the check and the wait is not missed.
            changed.as_mut().enable();
            if let Some(slot) = self.try_acquire() {
                return Ok(slot);
            }
            if self.is_closed() {
                return Err(AcquireError::Closed);
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return self.try_acquire().ok_or(AcquireError::Timeout);
            }
        }
    }
}

struct WaitingGuard<'a>(&'a AtomicUsize);

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Index of the instance with the fewest requests in flight among those under `limit`
/// (0 = no limit). Ties go to the first one at or after `start` (mod len), so equal instances
/// take turns.
pub(crate) fn pick_least_loaded(
    loads: impl ExactSizeIterator<Item = usize>,
    limit: usize,
    start: usize,
) -> Option<usize> {
    let len = loads.len();
    if len == 0 {
        return None;
    }
    let start = start % len;
    let mut best: Option<(usize, usize)> = None;
    for (index, load) in loads.enumerate() {
        if limit != 0 && load >= limit {
            continue;
        }
        // Distance from `start`, so the rotation decides ties.
        let rank = (index + len - start) % len;
        match best {
            Some((best_load, best_rank)) if (best_load, best_rank) <= (load, rank) => {}
            _ => best = Some((load, rank)),
        }
    }
    best.map(|(_, rank)| (rank + start) % len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        "127.0.0.1:1".parse().unwrap()
    }

    #[test]
    fn picks_least_loaded_and_rotates_ties() {
        assert_eq!(pick_least_loaded([3, 1, 2].into_iter(), 0, 0), Some(1));
        assert_eq!(pick_least_loaded([0, 0, 0].into_iter(), 0, 0), Some(0));
        assert_eq!(pick_least_loaded([0, 0, 0].into_iter(), 0, 1), Some(1));
        assert_eq!(pick_least_loaded([0, 0, 0].into_iter(), 0, 5), Some(2));
        assert_eq!(pick_least_loaded(std::iter::empty::<usize>(), 0, 0), None);
    }

    #[test]
    fn respects_the_concurrency_limit() {
        assert_eq!(pick_least_loaded([2, 2].into_iter(), 2, 0), None);
        assert_eq!(pick_least_loaded([2, 1].into_iter(), 2, 0), Some(1));
        assert_eq!(pick_least_loaded([5, 9].into_iter(), 0, 0), Some(0));
    }

    #[tokio::test]
    async fn slots_are_released_on_drop() {
        let rev = RevisionEndpoints::new("s", "s-00001", Duration::from_secs(1), false, 1);
        let ep = Endpoint::new("a", "s-00001-a", addr());
        rev.add(ep.clone());
        let slot = rev.try_acquire().unwrap();
        assert_eq!(ep.in_flight(), 1);
        assert!(rev.try_acquire().is_none(), "limit 1 must hold");
        drop(slot);
        assert_eq!(ep.in_flight(), 0);
        assert!(rev.try_acquire().is_some());
        assert_eq!(rev.served(), 2, "every slot taken counts as a request served");
    }

    #[tokio::test(start_paused = true)]
    async fn finished_requests_add_their_time_in_flight() {
        let rev = RevisionEndpoints::new("s", "s-00001", Duration::from_secs(1), false, 0);
        rev.add(Endpoint::new("a", "s-00001-a", addr()));
        let first = rev.try_acquire().unwrap();
        tokio::time::advance(Duration::from_millis(30)).await;
        let second = rev.try_acquire().unwrap();
        tokio::time::advance(Duration::from_millis(10)).await;
        assert_eq!(rev.busy(), Duration::ZERO, "none has finished");
        drop((first, second));
        assert_eq!(rev.busy(), Duration::from_millis(50));
        // A request a sample saw in flight counts only from that sample on.
        let long = rev.try_acquire().unwrap();
        tokio::time::advance(Duration::from_millis(500)).await;
        rev.sampled(Instant::now());
        tokio::time::advance(Duration::from_millis(20)).await;
        drop(long);
        assert_eq!(rev.busy(), Duration::from_millis(70));
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_request_gets_an_instance_added_later() {
        let rev = RevisionEndpoints::new("s", "s-00001", Duration::from_secs(1), false, 0);
        let waiter = {
            let rev = rev.clone();
            tokio::spawn(async move {
                rev.acquire(Instant::now() + Duration::from_secs(5), 10)
                    .await
                    .map(|s| s.endpoint().id.clone())
            })
        };
        tokio::task::yield_now().await;
        assert_eq!(rev.waiting(), 1);
        rev.add(Endpoint::new("a", "a", addr()));
        assert_eq!(waiter.await.unwrap(), Ok("a".to_string()));
        assert_eq!(rev.waiting(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_times_out_and_the_queue_is_bounded() {
        let rev = RevisionEndpoints::new("s", "s-00001", Duration::from_secs(1), false, 0);
        let deadline = Instant::now() + Duration::from_secs(2);
        let first = {
            let rev = rev.clone();
            tokio::spawn(async move { rev.acquire(deadline, 1).await.map(|_| ()) })
        };
        tokio::task::yield_now().await;
        assert_eq!(rev.acquire(deadline, 1).await.map(|_| ()), Err(AcquireError::QueueFull));
        assert_eq!(first.await.unwrap(), Err(AcquireError::Timeout));
    }

    #[tokio::test(start_paused = true)]
    async fn closing_releases_waiting_requests_at_once() {
        let rev = RevisionEndpoints::new("s", "s-00001", Duration::from_secs(1), false, 0);
        let began = Instant::now();
        let waiter = {
            let rev = rev.clone();
            tokio::spawn(async move { rev.acquire(began + Duration::from_secs(300), 10).await.map(|_| ()) })
        };
        tokio::task::yield_now().await;
        rev.close();
        assert_eq!(waiter.await.unwrap(), Err(AcquireError::Closed));
        assert_eq!(began.elapsed(), Duration::ZERO);
        assert_eq!(
            rev.acquire(began + Duration::from_secs(1), 10).await.map(|_| ()),
            Err(AcquireError::Closed)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_freed_slot_goes_to_the_oldest_waiter_and_newcomers_queue_behind() {
        let rev = RevisionEndpoints::new("s", "s-00001", Duration::from_secs(1), false, 1);
        rev.add(Endpoint::new("a", "a", addr()));
        let held = rev.try_acquire_in_turn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let (order, mut served) = tokio::sync::mpsc::unbounded_channel();
        let mut waiters = Vec::new();
        for name in ["first", "second", "third"] {
            let (rev, order) = (rev.clone(), order.clone());
            waiters.push(tokio::spawn(async move {
                let slot = rev.acquire(deadline, 10).await.unwrap();
                order.send(name).unwrap();
                tokio::time::sleep(Duration::from_millis(10)).await;
                drop(slot);
            }));
            tokio::task::yield_now().await;
        }
        assert_eq!(rev.waiting(), 3);
        drop(held);
        // A newcomer arriving as the slot frees does not jump the queue.
        assert!(rev.try_acquire_in_turn().is_none());
        for waiter in waiters {
            waiter.await.unwrap();
        }
        let mut got = Vec::new();
        while let Ok(name) = served.try_recv() {
            got.push(name);
        }
        assert_eq!(got, ["first", "second", "third"]);
    }

    #[tokio::test(start_paused = true)]
    async fn drained_waits_for_in_flight_requests() {
        let rev = RevisionEndpoints::new("s", "s-00001", Duration::from_secs(1), false, 0);
        let ep = Endpoint::new("a", "a", addr());
        rev.add(ep.clone());
        let slot = rev.try_acquire().unwrap();
        rev.remove("a").unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let drain = tokio::spawn({
            let ep = ep.clone();
            async move { ep.drained(deadline).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!drain.is_finished());
        drop(slot);
        assert!(drain.await.unwrap());
    }
}
