//! The etcd v3 backend: a thin adapter, since etcd is already MVCC with etcd's model.
//!
//! Revisions are etcd's revisions (so several API servers on one etcd hand out
//! `resourceVersion`s that are valid on every one of them); create, update and delete
//! are etcd transactions comparing `create_revision` / `mod_revision`; a watch is an etcd
//! watch from `after + 1` with previous values; etcd's "required revision has been
//! compacted" becomes [`StoreError::Compacted`] (HTTP 410 Gone in the API).
//!
//! # Key prefix
//! Every key is stored under [`EtcdConfig::prefix`], so several virtual clusters share
//! one etcd without seeing each other's keys.
//!
//! # Compaction
//! etcd's compaction is cluster-wide, so [`Store::compact`] only raises this store's
//! floor (older revisions answer `Compacted` here, as the contract says) and never
//! discards another tenant's history. Physical compaction is kube-apiserver's
//! compactor: every [`EtcdConfig::compaction_interval`] one replica (coordinated
//! through the shared `compact_rev_key`, exactly as kube-apiserver does, so it also
//! cooperates with kube-apiservers on the same etcd) compacts etcd to the revision it
//! saw one interval earlier.
//!
//! # Failures
//! Reads and watches retry across members; a watch whose member dies resumes on
//! another from the last revision it delivered, so it neither misses nor repeats
//! events. Writes are not retried (a lost answer could hide a committed write): they
//! fail with [`StoreError::Backend`] and the client retries, as with kube-apiserver.

use crate::{
    Event, EventKind, KeyValue, ListOptions, ListResult, Progress, ProgressStream, Revision, Store, StoreError,
    WatchStream,
};
use async_trait::async_trait;
use bytes::Bytes;
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, Identity, TlsOptions, Txn, TxnOp,
    TxnOpResponse, WatchOptions,
};
use futures::StreamExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// How to reach etcd.
#[derive(Debug, Clone, Default)]
pub struct EtcdConfig {
    /// Client endpoints, e.g. `http://127.0.0.1:2379` or `https://etcd-0:2379`.
    pub endpoints: Vec<String>,
    /// Prefix of every key (e.g. `/vkube/NAME`); empty for none.
    pub prefix: String,
    /// CA bundle that signed the members' serving certificates (enables TLS).
    pub ca_file: Option<PathBuf>,
    /// Client certificate, for etcd's client-certificate authentication.
    pub cert_file: Option<PathBuf>,
    /// The client certificate's key.
    pub key_file: Option<PathBuf>,
    /// Physical compaction period (kube-apiserver's `--etcd-compaction-interval`,
    /// default 5 min); `None` disables it.
    pub compaction_interval: Option<Duration>,
}

/// A [`Store`] on an etcd v3 cluster.
pub struct EtcdStore {
    client: Client,
    prefix: String,
    /// Revisions at or below this (exclusive of it) answer `Compacted` ([`Store::compact`]).
    floor: Arc<AtomicI64>,
    compactor: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        if let Some(c) = self.compactor.take() {
            c.abort();
        }
    }
}

const MAX_MESSAGE: usize = 1 << 30;

/// How long one etcd request may take before it fails (and the client retries): a
/// request stuck on a member that died must not hang its caller.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

fn backend(e: etcd_client::Error) -> StoreError {
    let mut text = match &e {
        etcd_client::Error::GRpcStatus(s) => s.message().to_string(),
        other => other.to_string(),
    };
    // The cause (a refused TLS handshake, a refused connection) is further down.
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        let c = cause.to_string();
        if !text.contains(&c) {
            text.push_str(": ");
            text.push_str(&c);
        }
        source = cause.source();
    }
    StoreError::Backend(format!("etcd: {text}"))
}

/// Map etcd's revision errors (which arrive as gRPC statuses) for a read at `requested`.
fn read_error(e: etcd_client::Error, requested: Revision, floor: Revision) -> StoreError {
    if let etcd_client::Error::GRpcStatus(s) = &e {
        if s.message().contains("required revision has been compacted") {
            return StoreError::Compacted { requested, oldest: floor.max(requested + 1) };
        }
        if s.message().contains("required revision is a future revision") {
            return StoreError::FutureRevision(requested);
        }
    }
    backend(e)
}

/// The smallest key greater than every key starting with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn read_file(path: &PathBuf) -> Result<Vec<u8>, StoreError> {
    std::fs::read(path).map_err(|e| StoreError::Backend(format!("reading {}: {e}", path.display())))
}

impl EtcdStore {
    /// Connect to etcd and check that it answers.
    ///
    /// # Errors
    /// `Backend` when the TLS files cannot be read or no member answers within 10 s.
    pub async fn connect(config: EtcdConfig) -> Result<Self, StoreError> {
        if config.endpoints.is_empty() {
            return Err(StoreError::Backend("etcd: no endpoints given".into()));
        }
        let mut options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(REQUEST_TIMEOUT)
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
            .with_require_leader(true);
        if let Some(ca) = &config.ca_file {
            let mut tls = TlsOptions::new().ca_certificate(Certificate::from_pem(read_file(ca)?));
            if let (Some(cert), Some(key)) = (&config.cert_file, &config.key_file) {
                tls = tls.identity(Identity::from_pem(read_file(cert)?, read_file(key)?));
            }
            options = options.with_tls(tls);
        }
        let client = tokio::time::timeout(Duration::from_secs(10), Client::connect(&config.endpoints, Some(options)))
            .await
            .map_err(|_| StoreError::Backend(format!("etcd: no answer from {}", config.endpoints.join(","))))?
            .map_err(backend)?;
        let prefix = config.prefix.trim_end_matches('/').to_string();
        let mut store = EtcdStore { client, prefix, floor: Arc::new(AtomicI64::new(0)), compactor: None };
        // Fail now, not at the first request, when etcd is not there.
        let tls = if config.ca_file.is_some() { "with the CA and client certificate given" } else { "without TLS" };
        let hint = |e: &dyn std::fmt::Display| {
            StoreError::Backend(format!(
                "{e} (no etcd answered at {} {tls}: check the endpoints and, for TLS, caFile, certFile and keyFile)",
                config.endpoints.join(",")
            ))
        };
        tokio::time::timeout(Duration::from_secs(10), store.current_revision())
            .await
            .map_err(|_| hint(&"etcd: timed out"))?
            .map_err(|e| match e {
                StoreError::Backend(m) => hint(&m),
                other => hint(&other),
            })?;
        if let Some(every) = config.compaction_interval {
            store.compactor = Some(tokio::spawn(compactor(store.client.clone(), every)));
        }
        Ok(store)
    }

    fn full(&self, key: &str) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.prefix.len() + key.len());
        k.extend_from_slice(self.prefix.as_bytes());
        k.extend_from_slice(key.as_bytes());
        k
    }

    fn kv(&self) -> etcd_client::KvClient {
        self.client.kv_client().max_decoding_message_size(MAX_MESSAGE)
    }

    fn floor(&self) -> Revision {
        self.floor.load(Ordering::Relaxed)
    }

    fn check_floor(&self, requested: Revision) -> Result<(), StoreError> {
        let floor = self.floor();
        if requested < floor {
            return Err(StoreError::Compacted { requested, oldest: floor });
        }
        Ok(())
    }
}

fn convert(prefix_len: usize, kv: &etcd_client::KeyValue) -> KeyValue {
    let key = kv.key().get(prefix_len..).unwrap_or_default();
    KeyValue {
        key: String::from_utf8_lossy(key).into_owned(),
        value: Bytes::copy_from_slice(kv.value()),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
    }
}

fn header_revision(h: Option<&etcd_client::ResponseHeader>) -> Result<Revision, StoreError> {
    h.map(etcd_client::ResponseHeader::revision)
        .ok_or_else(|| StoreError::Backend("etcd: answer without header".into()))
}

/// Reads are idempotent: retry briefly while members fail over.
async fn retry_read<T, F, Fut>(mut op: F) -> Result<T, etcd_client::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
{
    let mut delay = Duration::from_millis(50);
    for _ in 0..6 {
        match op().await {
            Err(etcd_client::Error::TransportError(_)) => {}
            Err(etcd_client::Error::GRpcStatus(s)) if s.code() == tonic::Code::Unavailable => {}
            other => return other,
        }
        tokio::time::sleep(delay).await;
        delay *= 2;
    }
    op().await
}

#[async_trait]
impl Store for EtcdStore {
    async fn current_revision(&self) -> Result<Revision, StoreError> {
        let key = self.full("/");
        let resp = retry_read(|| {
            let mut kv = self.kv();
            let key = key.clone();
            async move { kv.get(key, Some(GetOptions::new().with_count_only())).await }
        })
        .await
        .map_err(backend)?;
        header_revision(resp.header())
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let full = self.full(key);
        let resp = retry_read(|| {
            let mut kv = self.kv();
            let full = full.clone();
            async move { kv.get(full, None).await }
        })
        .await
        .map_err(backend)?;
        Ok(resp.kvs().first().map(|kv| convert(self.prefix.len(), kv)))
    }

    async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListResult, StoreError> {
        if let Some(r) = options.revision {
            self.check_floor(r)?;
        }
        let full = self.full(prefix);
        let end = prefix_end(&full);
        let start = match &options.start_after {
            Some(after) => {
                let mut s = self.full(after);
                s.push(0);
                s
            }
            None => full,
        };
        let mut opts = GetOptions::new().with_range(end);
        if let Some(r) = options.revision {
            opts = opts.with_revision(r);
        }
        if options.limit > 0 {
            opts = opts.with_limit(i64::try_from(options.limit).unwrap_or(i64::MAX));
        }
        let resp = retry_read(|| {
            let mut kv = self.kv();
            let (start, opts) = (start.clone(), opts.clone());
            async move { kv.get(start, Some(opts)).await }
        })
        .await
        .map_err(|e| read_error(e, options.revision.unwrap_or(0), self.floor()))?;
        let items: Vec<KeyValue> = resp.kvs().iter().map(|kv| convert(self.prefix.len(), kv)).collect();
        let total = usize::try_from(resp.count()).unwrap_or(0);
        let revision = match options.revision {
            Some(r) => r,
            None => header_revision(resp.header())?,
        };
        Ok(ListResult { remaining: total.saturating_sub(items.len()), items, revision })
    }

    async fn count(&self, prefix: &str) -> Result<usize, StoreError> {
        let full = self.full(prefix);
        let end = prefix_end(&full);
        let resp = retry_read(|| {
            let mut kv = self.kv();
            let (full, end) = (full.clone(), end.clone());
            async move { kv.get(full, Some(GetOptions::new().with_range(end).with_count_only())).await }
        })
        .await
        .map_err(backend)?;
        Ok(usize::try_from(resp.count()).unwrap_or(0))
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<Revision, StoreError> {
        let full = self.full(key);
        let txn = Txn::new()
            .when([Compare::create_revision(full.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(full, value.to_vec(), None)]);
        let resp = self.kv().txn(txn).await.map_err(backend)?;
        if !resp.succeeded() {
            return Err(StoreError::AlreadyExists(key.to_string()));
        }
        header_revision(resp.header())
    }

    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<Revision, StoreError> {
        let full = self.full(key);
        let txn = Txn::new()
            .when([Compare::mod_revision(full.clone(), CompareOp::Equal, expected)])
            .and_then([TxnOp::put(full.clone(), value.to_vec(), None)])
            .or_else([TxnOp::get(full, None)]);
        let resp = self.kv().txn(txn).await.map_err(backend)?;
        if resp.succeeded() {
            return header_revision(resp.header());
        }
        Err(self.cas_failure(key, expected, &resp))
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue, StoreError> {
        let full = self.full(key);
        let compare = match expected {
            Some(r) => Compare::mod_revision(full.clone(), CompareOp::Equal, r),
            None => Compare::create_revision(full.clone(), CompareOp::Greater, 0),
        };
        let txn = Txn::new()
            .when([compare])
            .and_then([TxnOp::delete(full.clone(), Some(etcd_client::DeleteOptions::new().with_prev_key()))])
            .or_else([TxnOp::get(full, None)]);
        let resp = self.kv().txn(txn).await.map_err(backend)?;
        if !resp.succeeded() {
            return Err(self.cas_failure(key, expected.unwrap_or(0), &resp));
        }
        let revision = header_revision(resp.header())?;
        for op in resp.op_responses() {
            if let TxnOpResponse::Delete(d) = op
                && let Some(prev) = d.prev_kvs().first()
            {
                let mut kv = convert(self.prefix.len(), prev);
                kv.mod_revision = revision;
                return Ok(kv);
            }
        }
        Err(StoreError::NotFound(key.to_string()))
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError> {
        self.check_floor(after)?;
        let full = self.full(prefix);
        let end = prefix_end(&full);
        // etcd reports a compacted start revision only on the watch stream; a range
        // read at `after` answers it (and a future revision) up front.
        if after > 0 {
            retry_read(|| {
                let mut kv = self.kv();
                let (full, end) = (full.clone(), end.clone());
                async move {
                    kv.get(full, Some(GetOptions::new().with_range(end).with_revision(after).with_count_only())).await
                }
            })
            .await
            .map_err(|e| read_error(e, after, self.floor()))?;
        }
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        tokio::spawn(watch_loop(self.client.clone(), full, end, self.prefix.len(), after, tx, None));
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx).filter_map(|item| async move {
            match item {
                Ok(Progress::Event(ev)) => Some(Ok(ev)),
                Ok(Progress::Revision(_)) => None,
                Err(e) => Some(Err(e)),
            }
        })))
    }

    async fn watch_progress(
        &self,
        prefix: &str,
        after: Revision,
        wanted: Arc<tokio::sync::Notify>,
    ) -> Result<ProgressStream, StoreError> {
        self.check_floor(after)?;
        let full = self.full(prefix);
        let end = prefix_end(&full);
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        tokio::spawn(watch_loop(self.client.clone(), full, end, self.prefix.len(), after, tx, Some(wanted)));
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        let current = self.current_revision().await?;
        if revision > current {
            return Err(StoreError::FutureRevision(revision));
        }
        self.floor.fetch_max(revision, Ordering::Relaxed);
        Ok(())
    }
}

impl EtcdStore {
    /// Why a compare-and-swap transaction failed, from its `else` read.
    fn cas_failure(&self, key: &str, expected: Revision, resp: &etcd_client::TxnResponse) -> StoreError {
        for op in resp.op_responses() {
            if let TxnOpResponse::Get(g) = op {
                return match g.kvs().first() {
                    Some(kv) => StoreError::Conflict { key: key.to_string(), expected, actual: kv.mod_revision() },
                    None => StoreError::NotFound(key.to_string()),
                };
            }
        }
        StoreError::NotFound(key.to_string())
    }
}

fn convert_event(prefix_len: usize, ev: &etcd_client::Event) -> Option<Event> {
    let kv = ev.kv()?;
    let prev = ev.prev_kv().map(|p| convert(prefix_len, p));
    match ev.event_type() {
        EventType::Put => {
            let kind = if kv.create_revision() == kv.mod_revision() { EventKind::Create } else { EventKind::Update };
            Some(Event { kind, kv: convert(prefix_len, kv), prev })
        }
        EventType::Delete => {
            // The delete carries only the key; the last value is the previous one.
            let mut last = prev.clone().unwrap_or_else(|| convert(prefix_len, kv));
            last.mod_revision = kv.mod_revision();
            Some(Event { kind: EventKind::Delete, kv: last, prev })
        }
    }
}

/// Deliver the etcd watch's events from `after + 1`, re-establishing the watch (on any
/// member) from the last delivered revision when a member goes away. With `wanted`,
/// each notification asks etcd for a progress report, delivered as
/// [`Progress::Revision`] (etcd answers once the watch has caught up).
async fn watch_loop(
    client: Client,
    key: Vec<u8>,
    end: Vec<u8>,
    prefix_len: usize,
    after: Revision,
    tx: tokio::sync::mpsc::Sender<Result<Progress, StoreError>>,
    wanted: Option<Arc<tokio::sync::Notify>>,
) {
    let mut last = after;
    let mut delay = Duration::from_millis(50);
    let wanted = wanted.unwrap_or_default();
    loop {
        let opts = WatchOptions::new().with_range(end.clone()).with_start_revision(last + 1).with_prev_key();
        let mut watch = client.watch_client().max_decoding_message_size(MAX_MESSAGE);
        let started = tokio::select! {
            _ = tx.closed() => return,
            s = watch.watch(key.clone(), Some(opts)) => s,
        };
        if let Ok(mut stream) = started {
            loop {
                let msg = tokio::select! {
                    _ = tx.closed() => return,
                    () = wanted.notified() => {
                        if let Err(e) = stream.request_progress().await {
                            tracing::warn!(error = %e, "etcd watch: cannot ask for progress; watching again");
                            break;
                        }
                        continue;
                    }
                    m = stream.message() => m,
                };
                let Ok(Some(resp)) = msg else { break };
                if resp.compact_revision() > 0 {
                    let _ =
                        tx.send(Err(StoreError::Compacted { requested: last, oldest: resp.compact_revision() })).await;
                    return;
                }
                if resp.canceled() {
                    // E.g. the member lost its leader: resume elsewhere.
                    break;
                }
                if resp.events().is_empty() && !resp.created() {
                    // A progress notification: every change up to its revision is here.
                    if let Some(rev) = resp.header().map(|h| h.revision()).filter(|r| *r > last) {
                        last = rev;
                        if tx.send(Ok(Progress::Revision(rev))).await.is_err() {
                            return;
                        }
                    }
                    continue;
                }
                for ev in resp.events() {
                    let Some(ev) = convert_event(prefix_len, ev) else { continue };
                    if ev.revision() <= last {
                        continue;
                    }
                    last = ev.revision();
                    if tx.send(Ok(Progress::Event(ev))).await.is_err() {
                        return;
                    }
                }
                delay = Duration::from_millis(50);
            }
        }
        tokio::select! {
            _ = tx.closed() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

/// kube-apiserver's compactor: every `every`, whoever wins the compare-and-swap on
/// `compact_rev_key`'s version compacts etcd to the revision recorded one period earlier.
async fn compactor(client: Client, every: Duration) {
    const KEY: &str = "compact_rev_key";
    let (mut version, mut rev) = (0_i64, 0_i64);
    loop {
        tokio::time::sleep(every).await;
        let mut kv = client.kv_client();
        let txn = Txn::new()
            .when([Compare::version(KEY, CompareOp::Equal, version)])
            .and_then([TxnOp::put(KEY, rev.to_string(), None)])
            .or_else([TxnOp::get(KEY, None)]);
        let Ok(resp) = kv.txn(txn).await else { continue };
        let current = resp.header().map(etcd_client::ResponseHeader::revision).unwrap_or(0);
        if !resp.succeeded() {
            // Another compactor won this period; follow its count.
            for op in resp.op_responses() {
                if let TxnOpResponse::Get(g) = op {
                    version = g.kvs().first().map(etcd_client::KeyValue::version).unwrap_or(0);
                }
            }
            rev = current;
            continue;
        }
        version += 1;
        if rev > 0
            && let Err(e) = kv.compact(rev, None).await
            && !e.to_string().contains("compacted")
        {
            tracing::warn!("etcd compaction to {rev} failed: {e}");
        }
        rev = current;
    }
}
