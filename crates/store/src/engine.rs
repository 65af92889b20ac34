//! The MVCC engine shared by the memory and SQLite backends.
//!
//! # Invariants
//! - One writer thread applies all writes: it takes every request waiting in its queue,
//!   checks each against the current state (and the ones before it in the batch),
//!   hands the accepted changes to [`Durability::commit`] in one call (one transaction,
//!   one fsync: group commit), and only then makes them visible and answers the callers.
//! - Visible state and the event history change under one lock. There is one buffer of
//!   events, the history: a watch is a cursor (a revision) into it that reads forward
//!   under the read lock and sleeps until the writer announces a newer revision, so it
//!   sees every event exactly once, in order, and holds no copies of its own.
//! - The history is bounded by a count and by the bytes of the values it holds, so a
//!   burst of large writes cannot hold memory; a watch that falls behind its window
//!   ends with `Compacted` (410 Gone to API clients, which list again).

use crate::{Event, EventKind, KeyValue, ListOptions, ListResult, Revision, StoreError, WatchStream};
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, RwLock};
use tokio::sync::{oneshot, watch};

/// The most bytes of values the history keeps (beyond this, the oldest events go).
/// Watches read it at their own pace and must stay inside it: one that falls further
/// behind gets 410 Gone and lists again, as with kube-apiserver's watch cache, and a
/// paged list whose revision left it must start over. A burst of 30,000 pods through a
/// virtual cluster writes several MiB a second, and a list of them takes seconds, so
/// 4 MiB (the old bound) sent every controller into relists that fell behind again;
/// 64 MiB holds about half a minute of such a burst. Only written events take memory:
/// an idle cluster holds little.
pub const HISTORY_BYTES: usize = 64 * 1024 * 1024;
/// How many events a watch reads from the history per lock.
const WATCH_BATCH: usize = 256;

/// The durable part of a backend.
pub trait Durability: Send + 'static {
    /// Persist a batch of changes atomically, durably, before returning.
    ///
    /// # Errors
    /// A message; none of the batch is then applied.
    fn commit(&mut self, changes: &[Event], revision: Revision) -> Result<(), String>;
}

/// No durability at all (the memory backend).
pub struct Volatile;

impl Durability for Volatile {
    fn commit(&mut self, _: &[Event], _: Revision) -> Result<(), String> {
        Ok(())
    }
}

struct State {
    revision: Revision,
    compacted: Revision,
    data: BTreeMap<String, KeyValue>,
    history: VecDeque<Arc<Event>>,
    history_bytes: usize,
}

impl State {
    /// `data` at `revision`, with no history before it.
    fn at(data: BTreeMap<String, KeyValue>, revision: Revision) -> Self {
        State { revision, compacted: revision, data, history: VecDeque::new(), history_bytes: 0 }
    }
}

fn event_bytes(ev: &Event) -> usize {
    ev.kv.value.len() + ev.kv.key.len() + std::mem::size_of::<Event>()
}

enum Op {
    Create(Bytes),
    Update(Bytes, Revision),
    Delete(Option<Revision>),
}

struct WriteRequest {
    key: String,
    op: Op,
    reply: oneshot::Sender<Result<Event, StoreError>>,
}

/// The engine: in-memory MVCC state plus the writer thread.
pub struct Engine {
    state: Arc<RwLock<State>>,
    events: watch::Sender<Revision>,
    /// None for a follower, whose state changes only by [`Engine::apply`].
    writer: Option<std::sync::mpsc::Sender<WriteRequest>>,
    history_limit: usize,
}

fn poisoned<T>(_: T) -> StoreError {
    StoreError::Backend("store lock poisoned".into())
}

impl Engine {
    /// Start an engine over `data` (as loaded from the backend) at `revision`.
    /// History before `revision` is not available (watches from earlier answer
    /// `Compacted`). `history_limit` bounds the events kept for watch resumption.
    pub fn start(
        data: BTreeMap<String, KeyValue>,
        revision: Revision,
        durability: Box<dyn Durability>,
        history_limit: usize,
    ) -> Self {
        let state = Arc::new(RwLock::new(State::at(data, revision)));
        let (events, _) = watch::channel(revision);
        let (writer, queue) = std::sync::mpsc::channel::<WriteRequest>();
        let thread_state = state.clone();
        let thread_events = events.clone();
        std::thread::Builder::new()
            .name("vkube-store-writer".into())
            .spawn(move || writer_loop(queue, thread_state, thread_events, durability, history_limit))
            .map(|_| ())
            .unwrap_or_else(|e| tracing::error!("cannot start store writer thread: {e}"));
        Engine { state, events, writer: Some(writer), history_limit }
    }

    /// An engine that copies another store's state: it starts from `data` at
    /// `revision` and changes only by [`Engine::apply`], [`Engine::advance`] and
    /// [`Engine::reset`]; its writes answer `Closed`. The watch cache is one.
    pub fn follower(data: BTreeMap<String, KeyValue>, revision: Revision, history_limit: usize) -> Self {
        let state = Arc::new(RwLock::new(State::at(data, revision)));
        let (events, _) = watch::channel(revision);
        Engine { state, events, writer: None, history_limit }
    }

    /// Apply changes another store made, in revision order (a follower's only writes).
    /// Changes at or below the current revision are skipped.
    ///
    /// # Errors
    /// `Backend` when the state lock is poisoned.
    pub fn apply(&self, changes: &[Event]) -> Result<(), StoreError> {
        let current = self.current_revision()?;
        let fresh: Vec<Event> = changes.iter().filter(|e| e.revision() > current).cloned().collect();
        let Some(last) = fresh.last().map(Event::revision) else { return Ok(()) };
        publish(&self.state, &self.events, &fresh, last, self.history_limit).map_err(poisoned)
    }

    /// Move the revision on to `revision` with no change here (the other store's
    /// writes elsewhere); a lower revision is ignored.
    ///
    /// # Errors
    /// `Backend` when the state lock is poisoned.
    pub fn advance(&self, revision: Revision) -> Result<(), StoreError> {
        let mut st = self.state.write().map_err(poisoned)?;
        if revision > st.revision {
            st.revision = revision;
            drop(st);
            self.events.send_replace(revision);
        }
        Ok(())
    }

    /// Start over from `data` at `revision` (a follower that lost track of its
    /// source): the history goes, so every watch ends with `Compacted` and lists again.
    ///
    /// # Errors
    /// `Backend` when the state lock is poisoned.
    pub fn reset(&self, data: BTreeMap<String, KeyValue>, revision: Revision) -> Result<(), StoreError> {
        let mut st = self.state.write().map_err(poisoned)?;
        *st = State::at(data, revision);
        drop(st);
        self.events.send_replace(revision);
        Ok(())
    }

    /// Wait until the revision is at least `revision`, for at most `timeout`; whether it
    /// got there.
    pub async fn wait_for(&self, revision: Revision, timeout: std::time::Duration) -> bool {
        let mut announced = self.events.subscribe();
        tokio::time::timeout(timeout, announced.wait_for(|r| *r >= revision)).await.is_ok_and(|r| r.is_ok())
    }

    /// The oldest revision a watch or list can start from.
    ///
    /// # Errors
    /// `Backend` when the state lock is poisoned.
    pub fn compacted(&self) -> Result<Revision, StoreError> {
        Ok(self.state.read().map_err(poisoned)?.compacted)
    }

    async fn write(&self, key: &str, op: Op) -> Result<Event, StoreError> {
        let (reply, rx) = oneshot::channel();
        let writer = self.writer.as_ref().ok_or(StoreError::Closed)?;
        writer.send(WriteRequest { key: key.to_string(), op, reply }).map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// The latest revision.
    pub fn current_revision(&self) -> Result<Revision, StoreError> {
        Ok(self.state.read().map_err(poisoned)?.revision)
    }

    /// Read one key.
    pub fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        Ok(self.state.read().map_err(poisoned)?.data.get(key).cloned())
    }

    /// Count keys under a prefix.
    pub fn count(&self, prefix: &str) -> Result<usize, StoreError> {
        let st = self.state.read().map_err(poisoned)?;
        Ok(st.data.range(prefix.to_string()..).take_while(|(k, _)| k.starts_with(prefix)).count())
    }

    /// List keys under a prefix (see [`crate::Store::list`]).
    pub fn list(&self, prefix: &str, options: ListOptions) -> Result<ListResult, StoreError> {
        let st = self.state.read().map_err(poisoned)?;
        let start = match &options.start_after {
            Some(k) if k.as_str() >= prefix => std::ops::Bound::Excluded(k.clone()),
            _ => std::ops::Bound::Included(prefix.to_string()),
        };
        let limit = if options.limit == 0 { usize::MAX } else { options.limit };
        match options.revision {
            Some(rev) if rev < st.revision => {
                if rev < st.compacted {
                    return Err(StoreError::Compacted { requested: rev, oldest: st.compacted });
                }
                // Rebuild the prefix as of `rev` by undoing later events.
                let mut snapshot: BTreeMap<String, Option<KeyValue>> = BTreeMap::new();
                for ev in st.history.iter().rev() {
                    if ev.revision() <= rev {
                        break;
                    }
                    if ev.kv.key.starts_with(prefix) {
                        snapshot.insert(ev.kv.key.clone(), ev.prev.clone());
                    }
                }
                let mut merged: BTreeMap<&str, &KeyValue> = st
                    .data
                    .range((start.clone(), std::ops::Bound::Unbounded))
                    .take_while(|(k, _)| k.starts_with(prefix))
                    .map(|(k, v)| (k.as_str(), v))
                    .collect();
                for (k, v) in &snapshot {
                    let in_range = match &start {
                        std::ops::Bound::Excluded(s) => k > s,
                        std::ops::Bound::Included(s) => k >= s,
                        std::ops::Bound::Unbounded => true,
                    };
                    if !in_range {
                        continue;
                    }
                    match v {
                        Some(kv) => {
                            merged.insert(k.as_str(), kv);
                        }
                        None => {
                            merged.remove(k.as_str());
                        }
                    }
                }
                let total = merged.len();
                let items: Vec<KeyValue> = merged.into_values().take(limit).cloned().collect();
                Ok(ListResult { remaining: total - items.len(), items, revision: rev })
            }
            Some(rev) if rev > st.revision => Err(StoreError::FutureRevision(rev)),
            _ => {
                let mut items = Vec::new();
                let mut remaining = 0;
                for (k, v) in st.data.range((start, std::ops::Bound::Unbounded)) {
                    if !k.starts_with(prefix) {
                        break;
                    }
                    if items.len() < limit {
                        items.push(v.clone());
                    } else {
                        remaining += 1;
                    }
                }
                Ok(ListResult { items, revision: st.revision, remaining })
            }
        }
    }

    /// Create a key.
    pub async fn create(&self, key: &str, value: Bytes) -> Result<Revision, StoreError> {
        Ok(self.write(key, Op::Create(value)).await?.revision())
    }

    /// Compare-and-swap update.
    pub async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<Revision, StoreError> {
        Ok(self.write(key, Op::Update(value, expected)).await?.revision())
    }

    /// Delete, optionally compare-and-swap.
    pub async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue, StoreError> {
        Ok(self.write(key, Op::Delete(expected)).await?.kv)
    }

    /// Watch a prefix from a revision.
    pub fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError> {
        {
            let st = self.state.read().map_err(poisoned)?;
            if after < st.compacted {
                return Err(StoreError::Compacted { requested: after, oldest: st.compacted });
            }
            if after > st.revision {
                return Err(StoreError::FutureRevision(after));
            }
        }
        let cursor = Cursor {
            state: self.state.clone(),
            announced: self.events.subscribe(),
            prefix: prefix.to_string(),
            after,
            ready: VecDeque::new(),
            ended: false,
        };
        Ok(Box::pin(futures::stream::unfold(cursor, |mut c| async move {
            let next = c.next().await?;
            Some((next, c))
        })))
    }

    /// Drop history up to `revision`.
    pub fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        let mut st = self.state.write().map_err(poisoned)?;
        if revision > st.revision {
            return Err(StoreError::FutureRevision(revision));
        }
        if revision <= st.compacted {
            return Ok(());
        }
        while st.history.front().is_some_and(|e| e.revision() <= revision) {
            if let Some(old) = st.history.pop_front() {
                st.history_bytes -= event_bytes(&old);
            }
        }
        st.compacted = revision;
        Ok(())
    }

    /// How many events of history are kept.
    pub fn history_limit(&self) -> usize {
        self.history_limit
    }
}

/// A watch: a position in the history.
struct Cursor {
    state: Arc<RwLock<State>>,
    announced: watch::Receiver<Revision>,
    prefix: String,
    after: Revision,
    ready: VecDeque<Event>,
    ended: bool,
}

impl Cursor {
    async fn next(&mut self) -> Option<Result<Event, StoreError>> {
        loop {
            if self.ended {
                return None;
            }
            if let Some(ev) = self.ready.pop_front() {
                return Some(Ok(ev));
            }
            // Mark the latest announcement seen before reading, so a write that lands
            // after the read wakes the wait below.
            self.announced.borrow_and_update();
            {
                let Ok(st) = self.state.read() else { return Some(Err(StoreError::Closed)) };
                if self.after < st.compacted {
                    self.ended = true;
                    return Some(Err(StoreError::Compacted { requested: self.after, oldest: st.compacted }));
                }
                let start = st.history.partition_point(|e| e.revision() <= self.after);
                for ev in st.history.range(start..) {
                    self.after = ev.revision();
                    if ev.kv.key.starts_with(&self.prefix) {
                        self.ready.push_back((**ev).clone());
                        if self.ready.len() >= WATCH_BATCH {
                            break;
                        }
                    }
                }
            }
            if self.ready.is_empty() && self.announced.changed().await.is_err() {
                return None;
            }
        }
    }
}

/// Make committed `changes` visible at revision `next`: the state, the history (trimmed
/// to its bounds) and the announcement that wakes the watches.
fn publish(
    state: &RwLock<State>,
    events: &watch::Sender<Revision>,
    changes: &[Event],
    next: Revision,
    history_limit: usize,
) -> Result<(), ()> {
    {
        let mut st = state.write().map_err(|_| ())?;
        st.revision = next;
        for ev in changes {
            match ev.kind {
                EventKind::Delete => {
                    st.data.remove(&ev.kv.key);
                }
                _ => {
                    st.data.insert(ev.kv.key.clone(), ev.kv.clone());
                }
            }
            st.history_bytes += event_bytes(ev);
            st.history.push_back(Arc::new(ev.clone()));
        }
        while st.history.len() > history_limit || (st.history_bytes > HISTORY_BYTES && st.history.len() > 1) {
            if let Some(old) = st.history.pop_front() {
                st.compacted = old.revision();
                st.history_bytes -= event_bytes(&old);
            }
        }
    }
    events.send_replace(next);
    Ok(())
}

fn writer_loop(
    queue: std::sync::mpsc::Receiver<WriteRequest>,
    state: Arc<RwLock<State>>,
    events: watch::Sender<Revision>,
    mut durability: Box<dyn Durability>,
    history_limit: usize,
) {
    const MAX_BATCH: usize = 1024;
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let Ok(guard) = state.read() else { return };
        let base = guard.revision;
        let mut pending: HashMap<String, Option<KeyValue>> = HashMap::new();
        let mut accepted: Vec<(Event, oneshot::Sender<Result<Event, StoreError>>)> = Vec::new();
        let mut rejected = Vec::new();
        let mut next = base;
        for req in batch {
            let current = match pending.get(&req.key) {
                Some(v) => v.clone(),
                None => guard.data.get(&req.key).cloned(),
            };
            let outcome = match (req.op, current) {
                (Op::Create(_), Some(_)) => Err(StoreError::AlreadyExists(req.key.clone())),
                (Op::Create(value), None) => {
                    next += 1;
                    let kv = KeyValue { key: req.key.clone(), value, create_revision: next, mod_revision: next };
                    Ok(Event { kind: EventKind::Create, kv, prev: None })
                }
                (Op::Update(..) | Op::Delete(_), None) => Err(StoreError::NotFound(req.key.clone())),
                (Op::Update(_, expected), Some(cur)) if cur.mod_revision != expected => {
                    Err(StoreError::Conflict { key: req.key.clone(), expected, actual: cur.mod_revision })
                }
                (Op::Update(value, _), Some(cur)) => {
                    next += 1;
                    let kv = KeyValue {
                        key: req.key.clone(),
                        value,
                        create_revision: cur.create_revision,
                        mod_revision: next,
                    };
                    Ok(Event { kind: EventKind::Update, kv, prev: Some(cur) })
                }
                (Op::Delete(Some(expected)), Some(cur)) if cur.mod_revision != expected => {
                    Err(StoreError::Conflict { key: req.key.clone(), expected, actual: cur.mod_revision })
                }
                (Op::Delete(_), Some(cur)) => {
                    next += 1;
                    let kv = KeyValue { mod_revision: next, ..cur.clone() };
                    Ok(Event { kind: EventKind::Delete, kv, prev: Some(cur) })
                }
            };
            match outcome {
                Ok(ev) => {
                    let after = if ev.kind == EventKind::Delete { None } else { Some(ev.kv.clone()) };
                    pending.insert(req.key, after);
                    accepted.push((ev, req.reply));
                }
                Err(e) => rejected.push((e, req.reply)),
            }
        }
        drop(guard);
        for (e, reply) in rejected {
            let _ = reply.send(Err(e));
        }
        if accepted.is_empty() {
            continue;
        }
        let changes: Vec<Event> = accepted.iter().map(|(e, _)| e.clone()).collect();
        if let Err(msg) = durability.commit(&changes, next) {
            tracing::error!("store commit failed: {msg}");
            for (_, reply) in accepted {
                let _ = reply.send(Err(StoreError::Backend(msg.clone())));
            }
            continue;
        }
        if publish(&state, &events, &changes, next, history_limit).is_err() {
            return;
        }
        for (ev, reply) in accepted {
            let _ = reply.send(Ok(ev));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn history_is_bounded_by_bytes_and_late_watches_are_compacted() {
        let engine = Engine::start(BTreeMap::new(), 1, Box::new(Volatile), 1_000_000);
        let big = Bytes::from(vec![b'x'; 1024 * 1024]);
        let first = engine.create("/k/0", big.clone()).await.expect("create");
        let mut early = engine.watch("/k/", first).expect("watch");
        let writes = HISTORY_BYTES / big.len() + 8;
        let mut last = first;
        for i in 1..writes {
            last = engine.create(&format!("/k/{i}"), big.clone()).await.expect("create");
        }
        let bytes = engine.state.read().expect("lock").history_bytes;
        assert!(bytes <= HISTORY_BYTES, "{bytes}");
        // A watch from before the window ends with Compacted, after the events it could
        // still read; one from inside it sees the rest in order.
        assert!(matches!(engine.watch("/k/", first), Err(StoreError::Compacted { .. })));
        let mut seen = 0;
        loop {
            match early.next().await {
                Some(Ok(_)) => seen += 1,
                Some(Err(StoreError::Compacted { .. })) => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(seen < writes);
        let mut recent = engine.watch("/k/", last - 3).expect("watch");
        for want in last - 2..=last {
            assert_eq!(recent.next().await.expect("event").expect("ok").revision(), want);
        }
    }
}
