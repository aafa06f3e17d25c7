//! The shared store in memory, for tests of the cluster logic without a Redis: several
//! nodes in one process share one `MemoryStore`, expiries follow the given clock, and it
//! can be made to fail like an unreachable Redis.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;

use super::store::{Changes, ClusterStore, Known, PublishedClient, PulledTask, StoreError, TaskRecord};
use super::view::{Member, NodeId};
use crate::clock::SharedClock;
use crate::ids::{ClientId, TaskId};
use crate::piece::PieceDigest;

#[derive(Default)]
struct Shared {
    members: BTreeMap<NodeId, (Member, Instant)>,
    clients: HashMap<TaskId, BTreeMap<ClientId, PublishedClient>>,
    tasks: HashMap<TaskId, TaskRecord>,
    pieces: HashMap<TaskId, BTreeMap<u64, PieceDigest>>,
}

#[derive(Clone)]
pub struct MemoryStore {
    shared: Arc<Mutex<Shared>>,
    down: Arc<AtomicBool>,
    clock: SharedClock,
}

impl MemoryStore {
    pub fn new(clock: SharedClock) -> MemoryStore {
        MemoryStore { shared: Arc::default(), down: Arc::default(), clock }
    }

    /// Makes every call fail (or work again), as a Redis that went away would.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    fn with<T>(&self, f: impl FnOnce(&mut Shared) -> T) -> Result<T, StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Redis("connection refused".into()));
        }
        let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        Ok(f(&mut shared))
    }
}

impl ClusterStore for MemoryStore {
    fn renew(&self, me: &Member, ttl: Duration) -> BoxFuture<'static, Result<Vec<Member>, StoreError>> {
        let now = self.clock.now();
        let result = self.with(|s| {
            s.members.insert(me.id.clone(), (me.clone(), now + ttl));
            s.members.retain(|_, (_, until)| *until > now);
            s.members.values().map(|(m, _)| m.clone()).collect()
        });
        Box::pin(async move { result })
    }

    fn push(&self, changes: Changes, _ttl: Duration) -> BoxFuture<'static, Result<(), StoreError>> {
        let result = self.with(|s| {
            for (task, client) in changes.clients {
                s.clients.entry(task).or_default().insert(client.cid.clone(), client);
            }
            for (task, cid) in changes.gone {
                if let Some(c) = s.clients.get_mut(&task) {
                    c.remove(&cid);
                }
            }
            for (task, record) in changes.tasks {
                s.tasks.insert(task, record);
            }
            for (task, pieces) in changes.pieces {
                if pieces.is_empty() {
                    s.pieces.remove(&task);
                } else {
                    s.pieces.entry(task).or_default().extend(pieces);
                }
            }
            for task in changes.dropped {
                s.tasks.remove(&task);
                s.pieces.remove(&task);
            }
        });
        Box::pin(async move { result })
    }

    fn pull(&self, tasks: Vec<(TaskId, Known)>) -> BoxFuture<'static, Result<Vec<PulledTask>, StoreError>> {
        let result = self.with(|s| {
            tasks
                .into_iter()
                .map(|(task, known)| {
                    let clients = s.clients.get(&task).map(|c| c.values().cloned().collect()).unwrap_or_default();
                    let record = known.wants_record.then(|| s.tasks.get(&task).cloned()).flatten();
                    let pieces = record.as_ref().and_then(|r| {
                        let changed = known.cdn != Some((r.run_id, r.cdn_pieces));
                        changed.then(|| {
                            s.pieces.get(&task).map(|p| p.iter().map(|(n, d)| (*n, *d)).collect()).unwrap_or_default()
                        })
                    });
                    PulledTask { task, clients, record, pieces }
                })
                .collect()
        });
        Box::pin(async move { result })
    }
}
