//! This node's member key (`<prefix>members/<node>`): its address, role and version, on a lease
//! of its own kept alive by a task, so a node that dies leaves the member list within a TTL.

use std::time::Duration;

use etcd_client::{Client, PutOptions};
use tokio::{sync::watch, task::JoinHandle};

use super::keys::Member;

/// The task that keeps the member key; the key goes with its lease when the task is dropped
/// and the lease expires, or at once on `revoke`.
pub struct MemberKey {
    role: watch::Sender<&'static str>,
    lease: watch::Receiver<i64>,
    task: JoinHandle<()>,
}

impl MemberKey {
    pub fn start(client: Client, key: String, member: Member, ttl_s: i64) -> Self {
        let (role, roles) = watch::channel("follower");
        let (lease_tx, lease) = watch::channel(0);
        let task = tokio::spawn(keep(client, key, member, ttl_s, roles, lease_tx));
        Self { role, lease, task }
    }

    /// Says this node's role in the key (written by the task, the latest role last).
    pub fn set_role(&self, role: &'static str) {
        self.role
            .send_if_modified(|current| std::mem::replace(current, role) != role);
    }

    /// Removes the key now (a clean shutdown).
    pub async fn revoke(&self, client: &mut Client) {
        self.task.abort();
        let lease = *self.lease.borrow();
        if lease != 0 {
            let _ = client.lease_revoke(lease).await;
        }
    }
}

impl Drop for MemberKey {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Writes the key on a fresh lease, then keeps the lease alive a third of the TTL apart and
/// writes the key again on each change of role; after any failure it starts over.
async fn keep(
    mut client: Client,
    key: String,
    mut member: Member,
    ttl_s: i64,
    mut roles: watch::Receiver<&'static str>,
    lease_tx: watch::Sender<i64>,
) {
    let every = Duration::from_millis((ttl_s as u64 * 1000 / 3).max(100));
    loop {
        let round = async {
            let lease = client.lease_grant(ttl_s, None).await?.id();
            lease_tx.send_replace(lease);
            let (mut keeper, mut answers) = client.lease_keep_alive(lease).await?;
            loop {
                member.role = (*roles.borrow_and_update()).to_owned();
                let value = serde_json::to_vec(&member).expect("a member serialises");
                client
                    .put(key.clone(), value, Some(PutOptions::new().with_lease(lease)))
                    .await?;
                loop {
                    tokio::select! {
                        changed = roles.changed() => {
                            if changed.is_err() {
                                return Ok(());
                            }
                            break;
                        }
                        _ = tokio::time::sleep(every) => {
                            keeper.keep_alive().await?;
                            match answers.message().await? {
                                Some(answer) if answer.ttl() > 0 => {}
                                _ => return Err(etcd_client::Error::LeaseKeepAliveError("the member lease expired".into())),
                            }
                        }
                    }
                }
            }
        };
        match round.await {
            Ok(()) => return,
            Err(error) => {
                tracing::debug!(%error, "could not keep the etcd member key; starting over");
                tokio::time::sleep(every.min(Duration::from_secs(1))).await;
            }
        }
    }
}
