//! The shared store on Redis: a single server, a Sentinel-managed master, or a Redis Cluster.
//!
//! ```text
//! {P}:members                 SET of node IDs
//! {P}:member:<node>           member record (JSON), expires after member_ttl
//! {P}:task:<id>               the owner's task record (JSON)
//! {P}:task:<id>:cdn           HASH piece number → "md5:len" of the owner's CDN pieces
//! {P}:task:<id>:clients       HASH CID → client record (JSON), every node's clients
//! {P}:task:<id>:have:<cid>    the client's piece bitmap (SETBIT order)
//! ```
//! `P` is the key prefix in braces, a hash tag: in a Redis Cluster every key lands in one
//! slot, so multi-key commands and pipelines work there too. Each sync is two pipelined
//! round trips at most, whatever the number of tasks and clients.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{FromRedisValue, IntoConnectionInfo, Pipeline};
use tokio::sync::Mutex;

use super::store::{Changes, ClusterStore, Known, PublishedClient, PulledTask, StoreError, TaskRecord};
use super::view::Member;
use crate::ids::TaskId;
use crate::piece::PieceDigest;

/// How long one round trip to Redis may take before the call counts as failed.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a `redis_url` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreUrlError {
    #[error("{0}")]
    Invalid(String),
    #[error("redis+sentinel URL needs a service name: redis+sentinel://host:port[,host:port]/service[/db]")]
    NoService,
    #[error("no host in {0:?}")]
    NoHost(String),
}

/// How to reach Redis.
enum Target {
    Single(Box<redis::Client>),
    Sentinel(Box<SentinelClient>),
    Cluster(Box<redis::cluster::ClusterClient>),
}

impl Target {
    fn parse(url: &str) -> Result<Target, StoreUrlError> {
        let invalid = |e: redis::RedisError| StoreUrlError::Invalid(e.to_string());
        if let Some(rest) = url.strip_prefix("redis+sentinel://") {
            let (auth, hosts, path) = split_multi(rest).ok_or_else(|| StoreUrlError::NoHost(url.to_string()))?;
            let (service, db) = match path.split_once('/') {
                Some((s, db)) => (s, db),
                None => (path, "0"),
            };
            if service.is_empty() {
                return Err(StoreUrlError::NoService);
            }
            let sentinels: Vec<String> = hosts.iter().map(|h| format!("redis://{h}")).collect();
            let data_node = format!("redis://{auth}127.0.0.1/{db}").into_connection_info().map_err(invalid)?;
            let node =
                SentinelNodeConnectionInfo::default().set_redis_connection_info(data_node.redis_settings().clone());
            let client = SentinelClient::build(sentinels, service.to_string(), Some(node), SentinelServerType::Master)
                .map_err(invalid)?;
            return Ok(Target::Sentinel(Box::new(client)));
        }
        if let Some(rest) = url.strip_prefix("redis+cluster://") {
            let (auth, hosts, _) = split_multi(rest).ok_or_else(|| StoreUrlError::NoHost(url.to_string()))?;
            let nodes: Vec<String> = hosts.iter().map(|h| format!("redis://{auth}{h}")).collect();
            return redis::cluster::ClusterClient::new(nodes).map(|c| Target::Cluster(Box::new(c))).map_err(invalid);
        }
        redis::Client::open(url).map(|c| Target::Single(Box::new(c))).map_err(invalid)
    }
}

/// `[user:pass@]h1:p1,h2:p2[/path]` → (`user:pass@` or "", hosts, path).
fn split_multi(rest: &str) -> Option<(String, Vec<String>, &str)> {
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (auth, hosts) = match authority.rsplit_once('@') {
        Some((a, h)) => (format!("{a}@"), h),
        None => (String::new(), authority),
    };
    let hosts: Vec<String> = hosts.split(',').filter(|h| !h.is_empty()).map(str::to_string).collect();
    (!hosts.is_empty()).then_some((auth, hosts, path))
}

#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Sentinel(MultiplexedConnection),
    Cluster(ClusterConnection),
}

pub struct RedisStore {
    target: Mutex<Target>,
    conn: Mutex<Option<Conn>>,
    prefix: String,
}

impl RedisStore {
    /// Checks the URL; nothing is connected until the first call, so a supernode starts
    /// while Redis is down.
    pub fn new(url: &str, key_prefix: &str) -> Result<Arc<RedisStore>, StoreUrlError> {
        let target = Target::parse(url.trim())?;
        Ok(Arc::new(RedisStore {
            target: Mutex::new(target),
            conn: Mutex::new(None),
            prefix: format!("{{{key_prefix}}}"),
        }))
    }

    fn key(&self, rest: &str) -> String {
        format!("{}:{rest}", self.prefix)
    }

    fn task_key(&self, task: &TaskId, suffix: &str) -> String {
        self.key(&format!("task:{task}{suffix}"))
    }

    async fn connection(&self) -> Result<Conn, StoreError> {
        let mut conn = self.conn.lock().await;
        if let Some(c) = conn.as_ref() {
            return Ok(c.clone());
        }
        let mut target = self.target.lock().await;
        let made = match &mut *target {
            Target::Single(client) => client.get_connection_manager().await.map(Conn::Single),
            Target::Sentinel(client) => client.get_async_connection().await.map(Conn::Sentinel),
            Target::Cluster(client) => client.get_async_connection().await.map(Conn::Cluster),
        };
        let made = made.map_err(|e| StoreError::Redis(e.to_string()))?;
        *conn = Some(made.clone());
        Ok(made)
    }

    /// Runs one pipeline; a failure drops the connection, so the next call connects again.
    async fn run<T: FromRedisValue>(&self, pipe: &Pipeline) -> Result<T, StoreError> {
        let conn = self.connection().await?;
        let call = async move {
            match conn {
                Conn::Single(mut c) => query(pipe, &mut c).await,
                Conn::Sentinel(mut c) => query(pipe, &mut c).await,
                Conn::Cluster(mut c) => query(pipe, &mut c).await,
            }
        };
        let result = match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(r) => r.map_err(|e| StoreError::Redis(e.to_string())),
            Err(_) => Err(StoreError::Redis(format!("no answer within {}s", CALL_TIMEOUT.as_secs()))),
        };
        if result.is_err() {
            *self.conn.lock().await = None;
        }
        result
    }
}

async fn query<T: FromRedisValue>(pipe: &Pipeline, c: &mut impl ConnectionLike) -> redis::RedisResult<T> {
    pipe.query_async(c).await
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, raw: &str) -> Option<T> {
    match serde_json::from_str(raw) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(record = what, error = %e, "ignoring a cluster record this version cannot read");
            None
        }
    }
}

fn encode<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

impl ClusterStore for Arc<RedisStore> {
    fn renew(&self, me: &Member, ttl: Duration) -> BoxFuture<'static, Result<Vec<Member>, StoreError>> {
        let (store, me) = (self.clone(), me.clone());
        Box::pin(async move {
            let members = store.key("members");
            let mut pipe = redis::pipe();
            pipe.cmd("SET").arg(store.key(&format!("member:{}", me.id))).arg(encode(&me)).arg("PX");
            pipe.arg(ttl.as_millis() as u64).ignore();
            pipe.cmd("SADD").arg(&members).arg(me.id.as_str()).ignore();
            pipe.cmd("SMEMBERS").arg(&members);
            let (ids,): (Vec<String>,) = store.run(&pipe).await?;
            let mut pipe = redis::pipe();
            pipe.cmd("MGET");
            for id in &ids {
                pipe.arg(store.key(&format!("member:{id}")));
            }
            let (records,): (Vec<Option<String>>,) = store.run(&pipe).await?;
            let mut live = Vec::new();
            let mut gone = redis::pipe();
            for (id, record) in ids.iter().zip(records) {
                match record.and_then(|r| decode::<Member>("member", &r)) {
                    Some(m) => live.push(m),
                    None => {
                        gone.cmd("SREM").arg(&members).arg(id).ignore();
                    }
                }
            }
            if live.len() < ids.len() {
                store.run::<()>(&gone).await?;
            }
            live.sort_by(|a, b| a.id.cmp(&b.id));
            Ok(live)
        })
    }

    fn push(&self, changes: Changes, ttl: Duration) -> BoxFuture<'static, Result<(), StoreError>> {
        let store = self.clone();
        Box::pin(async move {
            if changes.is_empty() {
                return Ok(());
            }
            let ms = ttl.as_millis() as u64;
            let mut pipe = redis::pipe();
            for (task, c) in &changes.clients {
                let clients = store.task_key(task, ":clients");
                pipe.cmd("HSET").arg(&clients).arg(c.cid.as_str()).arg(encode(c)).ignore();
                pipe.cmd("PEXPIRE").arg(&clients).arg(ms).ignore();
                let have = store.task_key(task, &format!(":have:{}", c.cid));
                pipe.cmd("SET").arg(have).arg(&c.have[..]).arg("PX").arg(ms).ignore();
            }
            for (task, cid) in &changes.gone {
                pipe.cmd("HDEL").arg(store.task_key(task, ":clients")).arg(cid.as_str()).ignore();
                pipe.cmd("DEL").arg(store.task_key(task, &format!(":have:{cid}"))).ignore();
            }
            for (task, record) in &changes.tasks {
                pipe.cmd("SET").arg(store.task_key(task, "")).arg(encode(record)).arg("PX").arg(ms).ignore();
            }
            for (task, pieces) in &changes.pieces {
                let cdn = store.task_key(task, ":cdn");
                if pieces.is_empty() {
                    pipe.cmd("DEL").arg(&cdn).ignore();
                    continue;
                }
                pipe.cmd("HSET").arg(&cdn);
                for (n, d) in pieces {
                    pipe.arg(*n).arg(d.to_string());
                }
                pipe.ignore();
                pipe.cmd("PEXPIRE").arg(&cdn).arg(ms).ignore();
            }
            for task in &changes.dropped {
                pipe.cmd("DEL").arg(store.task_key(task, "")).arg(store.task_key(task, ":cdn")).ignore();
            }
            store.run::<()>(&pipe).await
        })
    }

    fn pull(&self, tasks: Vec<(TaskId, Known)>) -> BoxFuture<'static, Result<Vec<PulledTask>, StoreError>> {
        let store = self.clone();
        Box::pin(async move {
            if tasks.is_empty() {
                return Ok(Vec::new());
            }
            let mut pipe = redis::pipe();
            for (task, _) in &tasks {
                pipe.cmd("HGETALL").arg(store.task_key(task, ":clients"));
                pipe.cmd("GET").arg(store.task_key(task, ""));
            }
            let first: Vec<(HashMap<String, String>, Option<String>)> = store.run(&pipe).await?;
            let mut out = Vec::with_capacity(tasks.len());
            let mut second = redis::pipe();
            // What the second round trip fetches, in order: a client's bitmap or a task's pieces.
            let mut wanted: Vec<(usize, Option<usize>)> = Vec::new();
            for (i, ((task, known), (clients, record))) in tasks.into_iter().zip(first).enumerate() {
                let mut pulled = PulledTask { task: task.clone(), clients: Vec::new(), record: None, pieces: None };
                for (cid, raw) in clients {
                    let Some(c) = decode::<PublishedClient>("client", &raw) else { continue };
                    if c.cid.as_str() != cid {
                        continue;
                    }
                    if known.held.get(&c.cid) != Some(&c.held) {
                        second.cmd("GET").arg(store.task_key(&task, &format!(":have:{cid}")));
                        wanted.push((i, Some(pulled.clients.len())));
                    }
                    pulled.clients.push(c);
                }
                pulled.record = record.filter(|_| known.wants_record).and_then(|r| decode::<TaskRecord>("task", &r));
                if let Some(r) = &pulled.record {
                    if known.cdn != Some((r.run_id, r.cdn_pieces)) {
                        second.cmd("HGETALL").arg(store.task_key(&task, ":cdn"));
                        wanted.push((i, None));
                    }
                }
                out.push(pulled);
            }
            if wanted.is_empty() {
                return Ok(out);
            }
            let answers: Vec<redis::Value> = store.run(&second).await?;
            for ((i, client), answer) in wanted.into_iter().zip(answers) {
                match client {
                    Some(c) => {
                        let bytes: Option<Vec<u8>> = FromRedisValue::from_redis_value(answer).unwrap_or(None);
                        out[i].clients[c].have = bytes.unwrap_or_default();
                    }
                    None => {
                        let raw: HashMap<u64, String> = FromRedisValue::from_redis_value(answer).unwrap_or_default();
                        let mut pieces: Vec<(u64, PieceDigest)> =
                            raw.into_iter().filter_map(|(n, d)| Some((n, d.parse().ok()?))).collect();
                        pieces.sort_by_key(|(n, _)| *n);
                        out[i].pieces = Some(pieces);
                    }
                }
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(matches!(Target::parse("redis://127.0.0.1:6379/2"), Ok(Target::Single(_))));
        assert!(matches!(
            Target::parse("redis+sentinel://127.0.0.1:26379,127.0.0.2:26379/mymaster/1"),
            Ok(Target::Sentinel(_))
        ));
        assert!(matches!(Target::parse("redis+cluster://127.0.0.1:7000,127.0.0.1:7001"), Ok(Target::Cluster(_))));
        assert_eq!(Target::parse("redis+sentinel://127.0.0.1:26379").err(), Some(StoreUrlError::NoService));
        assert!(Target::parse("redis+cluster://").is_err());
        assert!(Target::parse("http://x").is_err());
        assert_eq!(split_multi("u:p@a:1,b:2/s/3"), Some(("u:p@".into(), vec!["a:1".into(), "b:2".into()], "s/3")));
    }
}
