//! The etcd lease as a `LeaseStore`. A session is an etcd client with a watch on the leader key
//! and a database connection for the fence; either ending ends the session.
//!
//! Acquire: one transaction creates the leader key, only if absent, on a fresh etcd lease, and
//! moves the epoch key on, only if no other node moved it since it was read; then the fence in
//! the database is raised to the new epoch. Renew: keep the etcd lease alive and read the key
//! back. Release: release the fence (waiting for writes in flight), then revoke the etcd lease,
//! which deletes the key and wakes every follower's watch.

use std::{sync::Arc, time::Instant};

use etcd_client::{
    Client, Compare, CompareOp, EventType, KeyValue, LeaseKeepAliveStream, LeaseKeeper, PutOptions, Txn, TxnOp,
    TxnOpResponse, WatchStream,
};
use tokio_postgres::Client as DbClient;

use super::{
    keys::{Keys, Leader, Member},
    member::MemberKey,
    EtcdSettings,
};
use crate::{
    db,
    ha::{
        fence,
        store::{Attempt, LeaseRow, LeaseSession, LeaseStore, Notice, Renewal, StoreError, WriteFence},
    },
    ident::NodeId,
};

/// The etcd lease store of one node.
pub struct EtcdLeaseStore {
    context: Arc<Context>,
}

/// What every session of the node shares.
struct Context {
    settings: EtcdSettings,
    keys: Keys,
    cluster_id: u64,
    database_url: String,
    node_id: NodeId,
    address: String,
    ttl_s: i64,
    /// Random per process (see `Leader::instance`).
    instance: String,
}

impl EtcdLeaseStore {
    /// `cluster_id` is what `check_cluster` found: an answer from any other cluster is refused.
    pub fn new(
        settings: EtcdSettings,
        cluster_id: u64,
        database_url: &str,
        node_id: &NodeId,
        address: &str,
        ttl: std::time::Duration,
    ) -> Self {
        Self {
            context: Arc::new(Context {
                keys: Keys::new(&settings.prefix),
                settings,
                cluster_id,
                database_url: database_url.to_owned(),
                node_id: node_id.clone(),
                address: address.to_owned(),
                ttl_s: ttl.as_secs() as i64,
                instance: format!("{:016x}", rand::random::<u64>()),
            }),
        }
    }
}

/// The etcd lease this session holds, and the stream that keeps it alive.
struct Held {
    lease: i64,
    epoch: i64,
    keeper: LeaseKeeper,
    answers: LeaseKeepAliveStream,
    renewed_at: Instant,
}

pub struct EtcdLeaseSession {
    context: Arc<Context>,
    etcd: Client,
    db: DbClient,
    /// Ends when the database connection does.
    db_events: tokio::sync::mpsc::UnboundedReceiver<String>,
    watch: WatchStream,
    member: MemberKey,
    held: Option<Held>,
    /// A lease granted for an acquisition not yet complete: revoked if the session is dropped.
    pending: Option<i64>,
}

fn failed(doing: &'static str) -> impl Fn(etcd_client::Error) -> StoreError {
    move |error| StoreError::Failed(format!("etcd: {doing}: {error}"))
}

impl LeaseStore for EtcdLeaseStore {
    type Session = EtcdLeaseSession;

    async fn open(&self) -> Result<EtcdLeaseSession, StoreError> {
        let context = self.context.clone();
        // etcd first: while it has no quorum, retries cost the database no connection each.
        let (mut etcd, endpoint) = super::connect_one(
            &context.settings,
            std::time::Duration::from_secs(2),
            Some(context.cluster_id),
        )
        .await
        .map_err(failed("connect"))?;
        tracing::debug!(%endpoint, "the lease session talks to this etcd member");
        let (db, db_events) = db::connect_with_events(&context.database_url, context.node_id.as_str(), "lease").await?;
        let watch = etcd
            .watch(context.keys.leader(), None)
            .await
            .map_err(failed("watch the leader key"))?;
        let member = MemberKey::start(
            etcd.clone(),
            context.keys.member(context.node_id.as_str()),
            Member {
                node_id: context.node_id.to_string(),
                address: context.address.clone(),
                role: "follower".into(),
                version: env!("CARGO_PKG_VERSION").into(),
            },
            context.ttl_s,
        );
        Ok(EtcdLeaseSession {
            context,
            etcd,
            db,
            db_events,
            watch,
            member,
            held: None,
            pending: None,
        })
    }

    fn write_fence(&self) -> WriteFence {
        WriteFence::FenceRow
    }
}

/// The leader and epoch keys as one read saw them.
struct Seen {
    leader: Option<KeyValue>,
    epoch: Option<KeyValue>,
}

impl Seen {
    /// The epoch key's value: the last epoch a node was granted.
    fn last_epoch(&self) -> i64 {
        self.epoch
            .as_ref()
            .and_then(|kv| kv.value_str().ok()?.parse().ok())
            .unwrap_or(0)
    }

    /// The highest epoch either key shows: a leader key rewritten by hand may name an epoch
    /// above the epoch key's, and the next term must start above it too.
    fn highest_epoch(&self) -> i64 {
        let in_leader_key = self
            .leader
            .as_ref()
            .and_then(|kv| serde_json::from_slice::<Leader>(kv.value()).ok())
            .map_or(0, |leader| leader.epoch);
        self.last_epoch().max(in_leader_key)
    }
}

impl EtcdLeaseSession {
    /// Both keys in one linearizable read, from this cluster only.
    async fn see(&mut self) -> Result<Seen, StoreError> {
        let keys = &self.context.keys;
        let read = Txn::new().and_then([TxnOp::get(keys.leader(), None), TxnOp::get(keys.epoch(), None)]);
        let answer = self.etcd.txn(read).await.map_err(failed("read the leader key"))?;
        self.check_cluster(answer.header().map(|h| h.cluster_id()))?;
        let mut gets = answer.op_responses().into_iter().map(|op| match op {
            TxnOpResponse::Get(get) => get.kvs().first().cloned(),
            _ => None,
        });
        let seen = Seen {
            leader: gets.next().flatten(),
            epoch: gets.next().flatten(),
        };
        if seen.highest_epoch() > seen.last_epoch() {
            // A leader key above every granted epoch was written by hand: remember its epoch in
            // the database, so the next term starts above it even once the key is gone.
            fence::note_epoch_seen(&self.db, seen.highest_epoch()).await?;
        }
        Ok(seen)
    }

    fn check_cluster(&self, cluster_id: Option<u64>) -> Result<(), StoreError> {
        match cluster_id {
            Some(id) if id != self.context.cluster_id => Err(StoreError::Failed(format!(
                "etcd: an answer came from cluster {id:x}, not {:x} that this node started with; --etcd-endpoints must list one cluster",
                self.context.cluster_id
            ))),
            _ => Ok(()),
        }
    }

    /// The lease as `seen` shows it. A key on no etcd lease was not written by a node (a node's
    /// key always is), so nobody holds it, as with a key whose value autonomy cannot read.
    fn row(&self, seen: &Seen) -> LeaseRow {
        let ttl_ms = self.context.ttl_s * 1000;
        let Some(kv) = &seen.leader else {
            return LeaseRow {
                holder_id: None,
                holder_address: None,
                epoch: seen.last_epoch(),
                valid: false,
                expires_in_ms: 0,
            };
        };
        match serde_json::from_slice::<Leader>(kv.value()) {
            Ok(leader) => {
                let expires_in_ms = match &self.held {
                    Some(held) if held.lease == kv.lease() => {
                        (ttl_ms - held.renewed_at.elapsed().as_millis() as i64).max(0)
                    }
                    // Another holder's remaining time is not read (a round trip per poll): at
                    // most the TTL.
                    _ => ttl_ms,
                };
                LeaseRow {
                    holder_id: Some(leader.holder_id),
                    holder_address: Some(leader.holder_address),
                    epoch: leader.epoch,
                    valid: kv.lease() != 0,
                    expires_in_ms: if kv.lease() != 0 { expires_in_ms } else { 0 },
                }
            }
            Err(_) => LeaseRow {
                holder_id: Some(String::from_utf8_lossy(kv.value()).chars().take(64).collect()),
                holder_address: None,
                epoch: seen.last_epoch(),
                valid: kv.lease() != 0,
                expires_in_ms: if kv.lease() != 0 { ttl_ms } else { 0 },
            },
        }
    }

    /// The lease as it stands, and while this session holds it, the fence too: a fence that
    /// another epoch or holder raised is what a write of this session would meet, so the
    /// lease is read as theirs.
    async fn current(&mut self) -> Result<LeaseRow, StoreError> {
        let seen = self.see().await?;
        let row = self.row(&seen);
        let Some(held) = &self.held else {
            return Ok(row);
        };
        if !row.names(self.context.node_id.as_str(), held.epoch) {
            return Ok(row);
        }
        let fence = fence::read(&self.db).await?;
        if fence.epoch == held.epoch && fence.holder_id.as_deref() == Some(self.context.node_id.as_str()) {
            return Ok(row);
        }
        Ok(LeaseRow {
            holder_id: fence.holder_id,
            holder_address: None,
            epoch: fence.epoch,
            valid: !fence.released,
            expires_in_ms: 0,
        })
    }

    /// Revokes a lease this session no longer wants, if etcd answers.
    async fn revoke(&mut self, lease: i64) {
        if let Err(error) = self.etcd.lease_revoke(lease).await {
            tracing::debug!(%error, lease, "could not revoke an etcd lease; it expires by itself");
        }
    }

    async fn acquire(&mut self, seen: Seen) -> Result<Attempt, StoreError> {
        let context = self.context.clone();
        let keys = &context.keys;
        let node_id = context.node_id.as_str();
        let epoch = fence::epoch_floor(&self.db).await?.max(seen.highest_epoch()) + 1;
        let lease = self
            .etcd
            .lease_grant(context.ttl_s, None)
            .await
            .map_err(failed("grant a lease"))?
            .id();
        self.pending = Some(lease);
        let leader_unchanged = match &seen.leader {
            None => Compare::create_revision(keys.leader(), CompareOp::Equal, 0),
            Some(kv) => Compare::mod_revision(keys.leader(), CompareOp::Equal, kv.mod_revision()),
        };
        let epoch_unchanged = Compare::mod_revision(
            keys.epoch(),
            CompareOp::Equal,
            seen.epoch.as_ref().map_or(0, KeyValue::mod_revision),
        );
        let value = serde_json::to_vec(&Leader {
            holder_id: node_id.to_owned(),
            holder_address: context.address.clone(),
            epoch,
            instance: context.instance.clone(),
        })
        .expect("the leader key serialises");
        let take = Txn::new().when([leader_unchanged, epoch_unchanged]).and_then([
            TxnOp::put(keys.leader(), value, Some(PutOptions::new().with_lease(lease))),
            TxnOp::put(keys.epoch(), epoch.to_string(), None),
        ]);
        let taken = self.etcd.txn(take).await.map_err(failed("take the leader key"))?;
        self.check_cluster(taken.header().map(|h| h.cluster_id()))?;
        if !taken.succeeded() {
            // Another node was faster: the lease as it now stands.
            self.pending = None;
            self.revoke(lease).await;
            let seen = self.see().await?;
            return Ok(Attempt::Held(self.row(&seen)));
        }
        // The fence before the first protected write: it waits for the previous epoch's writes
        // still in flight and turns away every later one.
        match fence::raise(&self.db, epoch, node_id, &context.address).await {
            Ok(true) => {}
            Ok(false) => {
                self.pending = None;
                self.revoke(lease).await;
                return Err(StoreError::Failed(format!(
                    "the database's write fence stands at epoch {epoch} or above although etcd granted {epoch}: another lease store raised it; every node of a database must use the same --lease-store and --etcd-prefix"
                )));
            }
            Err(error) => {
                self.pending = None;
                self.revoke(lease).await;
                return Err(error.into());
            }
        }
        let (keeper, answers) = self
            .etcd
            .lease_keep_alive(lease)
            .await
            .map_err(failed("keep the lease alive"))?;
        self.pending = None;
        self.held = Some(Held {
            lease,
            epoch,
            keeper,
            answers,
            renewed_at: Instant::now(),
        });
        self.member.set_role("leader");
        Ok(Attempt::Acquired(LeaseRow {
            holder_id: Some(node_id.to_owned()),
            holder_address: Some(context.address.clone()),
            epoch,
            valid: true,
            expires_in_ms: context.ttl_s * 1000,
        }))
    }
}

impl LeaseSession for EtcdLeaseSession {
    async fn try_acquire(&mut self) -> Result<Attempt, StoreError> {
        let seen = self.see().await?;
        if let Some(kv) = &seen.leader {
            let ours = serde_json::from_slice::<Leader>(kv.value())
                .is_ok_and(|l| l.instance == self.context.instance && l.holder_id == self.context.node_id.as_str());
            if ours {
                // This process's key, from a term that has ended (its deadline passed, or its
                // session was lost in an outage): the election asks for a new term, so the key is
                // freed now rather than after its TTL, as the row lease does for its own session.
                self.held = None;
                if kv.lease() != 0 {
                    self.revoke(kv.lease()).await;
                }
                let seen = self.see().await?;
                if seen.leader.is_some() {
                    return Ok(Attempt::Held(self.row(&seen)));
                }
                return self.acquire(seen).await;
            }
            if kv.lease() != 0 {
                self.member.set_role("follower");
                return Ok(Attempt::Held(self.row(&seen)));
            }
        }
        self.held = None;
        self.acquire(seen).await
    }

    async fn renew(&mut self, epoch: i64) -> Result<Renewal, StoreError> {
        let Some(held) = self.held.as_mut().filter(|held| held.epoch == epoch) else {
            return Ok(Renewal::Refused(self.current().await?));
        };
        let sent = Instant::now();
        held.keeper.keep_alive().await.map_err(failed("keep the lease alive"))?;
        let answer = held
            .answers
            .message()
            .await
            .map_err(failed("keep the lease alive"))?
            .ok_or_else(|| StoreError::SessionEnded("etcd closed the lease's keep-alive stream".into()))?;
        self.check_cluster(answer.header().map(|h| h.cluster_id()))?;
        if answer.ttl() <= 0 {
            // The lease is gone (expired or revoked): so is the key it carried.
            self.held = None;
            self.member.set_role("follower");
            return Ok(Renewal::Refused(self.current().await?));
        }
        if let Some(held) = self.held.as_mut() {
            held.renewed_at = sent;
        }
        let row = self.current().await?;
        if row.valid && row.names(self.context.node_id.as_str(), epoch) {
            Ok(Renewal::Renewed(row))
        } else {
            Ok(Renewal::Refused(row))
        }
    }

    async fn read(&mut self) -> Result<LeaseRow, StoreError> {
        self.current().await
    }

    async fn release(&mut self, epoch: i64) -> Result<bool, StoreError> {
        let node_id = self.context.node_id.to_string();
        // The fence first: its UPDATE waits for this epoch's writes still in flight, so they
        // commit before any successor's epoch begins; then the key goes, waking the followers.
        if let Err(error) = fence::release(&self.db, epoch, &node_id).await {
            tracing::warn!(%error, epoch, "could not release the write fence; the successor raises it");
        }
        let held = self.held.take().filter(|held| held.epoch == epoch);
        let released = match held {
            Some(held) => self.etcd.lease_revoke(held.lease).await.is_ok(),
            None => false,
        };
        let mut etcd = self.etcd.clone();
        self.member.revoke(&mut etcd).await;
        Ok(released)
    }

    async fn next_notice(&mut self) -> Notice {
        loop {
            tokio::select! {
                answer = self.watch.message() => match answer {
                    Ok(Some(answer)) if answer.canceled() => {
                        tracing::warn!(reason = answer.cancel_reason(), "etcd cancelled the watch of the leader key");
                        return Notice::Ended;
                    }
                    Ok(Some(answer)) => {
                        if answer.events().iter().any(|event| event.event_type() == EventType::Delete) {
                            return Notice::Released;
                        }
                    }
                    Ok(None) => {
                        tracing::warn!("etcd ended the watch of the leader key");
                        return Notice::Ended;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "the watch of the leader key failed");
                        return Notice::Ended;
                    }
                },
                event = self.db_events.recv() => {
                    if event.is_none() {
                        tracing::warn!("the lease session's database connection closed");
                        return Notice::Ended;
                    }
                }
            }
        }
    }
}

impl Drop for EtcdLeaseSession {
    /// A session that ends frees what it held: the etcd lease is revoked in the background (the
    /// election has ended the term already), so a successor need not wait for its TTL.
    fn drop(&mut self) {
        let leases: Vec<i64> = self
            .held
            .as_ref()
            .map(|h| h.lease)
            .into_iter()
            .chain(self.pending)
            .collect();
        if leases.is_empty() {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let mut etcd = self.etcd.clone();
            runtime.spawn(async move {
                for lease in leases {
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), etcd.lease_revoke(lease)).await;
                }
            });
        }
    }
}
