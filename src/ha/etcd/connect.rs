//! Connecting to etcd, and what a node checks before it leads through it: the endpoints answer
//! and belong to one cluster, the cluster grants the lease TTL asked for, and the prefix is
//! this database's.

use std::time::{Duration, Instant};

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, PutOptions, TlsOptions, Txn, TxnOp,
};

pub use crate::api::EndpointHealth;

use super::{
    keys::{self, judge_prefix, Keys, PrefixProblem, PrefixState},
    EtcdSettings,
};

/// How long a start waits for the first etcd member to answer (members started together with
/// the nodes need a few seconds to elect a leader).
pub const START_WAIT: Duration = Duration::from_secs(10);
/// One endpoint's answer to a status request, at start and for `ha status`.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the etcd store cannot be used; each message names the flag to change.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("--etcd-endpoints: no member answered within {waited_s} s ({reasons}); start etcd or fix the endpoints")]
    Unreachable { waited_s: u64, reasons: String },
    #[error("--etcd-endpoints mixes etcd clusters: {0}; list the members of one cluster only")]
    MixedClusters(String),
    #[error("--lease-ttl-ms {requested_ms}: the etcd cluster grants at least {granted_s} s (its minimum lease TTL is 1.5 election timeouts, rounded up to a second); use --lease-ttl-ms {granted_s}000 or more, or lower etcd's --election-timeout")]
    TtlBelowMinimum { requested_ms: u64, granted_s: i64 },
    #[error("--etcd-prefix {prefix} holds keys autonomy did not write ({keys}); choose a prefix of its own for this database (e.g. /autonomy/<database>/)")]
    ForeignPrefix { prefix: String, keys: String },
    #[error("--etcd-prefix {prefix}: its owner key holds `{value}`, not autonomy's; choose a prefix of its own for this database")]
    UnknownOwner { prefix: String, value: String },
    #[error("--etcd-prefix {prefix} is used by the nodes of another database (token {token}); each database needs its own prefix, e.g. /autonomy/<database>/")]
    OtherDatabase { prefix: String, token: String },
    #[error("the etcd cluster refused a request at start ({doing}): {reason}; check --etcd-user and the password")]
    Refused { doing: &'static str, reason: String },
    #[error("--etcd-user {user}: etcd refused the user or its password ({endpoint}: {reason}); check --etcd-user and AUTONOMY_ETCD_PASSWORD (or --etcd-password-file)")]
    AuthFailed {
        user: String,
        endpoint: String,
        reason: String,
    },
}

/// A client of the whole cluster: requests go to any member that answers, and only to one that
/// has a leader (a member cut off from the others refuses instead of answering stale).
pub async fn connect(
    settings: &EtcdSettings,
    endpoints: &[String],
    timeout: Duration,
) -> Result<Client, etcd_client::Error> {
    let mut options = ConnectOptions::new()
        .with_connect_timeout(timeout)
        .with_keep_alive(Duration::from_secs(1), Duration::from_secs(1))
        .with_keep_alive_while_idle(true)
        .with_require_leader(true);
    if let Some((user, password)) = &settings.user {
        options = options.with_user(user.clone(), password.expose().to_owned());
    }
    if let Some(tls) = &settings.tls {
        let mut config = TlsOptions::new();
        if let Some(ca) = &tls.ca_pem {
            config = config.ca_certificate(Certificate::from_pem(ca));
        }
        if let Some((cert, key)) = &tls.identity {
            config = config.identity(Identity::from_pem(cert, key.expose()));
        }
        options = options.with_tls(config);
    }
    Client::connect(endpoints, Some(options)).await
}

/// A client of one member: the first endpoint to answer a status request with a raft leader
/// (and, given `cluster_id`, from that cluster). One member at a time, because the client's own
/// balancing keeps sending requests to a member that is down; a session that loses its member
/// is lost, and the next one starts with whichever member answers first.
pub async fn connect_one(
    settings: &EtcdSettings,
    timeout: Duration,
    cluster_id: Option<u64>,
) -> Result<(Client, String), etcd_client::Error> {
    let attempts = settings.endpoints.iter().map(|endpoint| {
        Box::pin(async move {
            let mut client = connect(settings, std::slice::from_ref(endpoint), timeout).await?;
            let status = client.status().await?;
            if status.leader() == 0 {
                return Err(etcd_client::Error::Internal(format!("{endpoint} sees no raft leader")));
            }
            let answered_from = status.header().map(|h| h.cluster_id());
            if let (Some(expected), Some(found)) = (cluster_id, answered_from) {
                if expected != found {
                    return Err(etcd_client::Error::Internal(format!(
                        "{endpoint} is in cluster {found:x}, not {expected:x}"
                    )));
                }
            }
            Ok((client, endpoint.clone()))
        })
    });
    match tokio::time::timeout(timeout, futures_util::future::select_ok(attempts)).await {
        Ok(Ok((chosen, _))) => Ok(chosen),
        Ok(Err(last)) => Err(last),
        Err(_) => Err(etcd_client::Error::Internal(format!(
            "no etcd member answered within {} ms",
            timeout.as_millis()
        ))),
    }
}

/// Asks every endpoint for its status, all at once, each within a bound.
pub async fn endpoint_health(settings: &EtcdSettings) -> Vec<EndpointHealth> {
    let probes = settings.endpoints.iter().map(|endpoint| async move {
        let answer = tokio::time::timeout(PROBE_TIMEOUT, async {
            let mut client = connect(settings, std::slice::from_ref(endpoint), PROBE_TIMEOUT).await?;
            client.status().await
        })
        .await;
        match answer {
            Ok(Ok(status)) => EndpointHealth {
                endpoint: endpoint.clone(),
                healthy: status.leader() != 0,
                cluster_id: status.header().map(|h| format!("{:x}", h.cluster_id())),
                error: (status.leader() == 0).then(|| "the member sees no raft leader".to_owned()),
            },
            Ok(Err(error)) => unhealthy(endpoint, error.to_string()),
            Err(_) => unhealthy(endpoint, format!("no answer within {} ms", PROBE_TIMEOUT.as_millis())),
        }
    });
    futures_util::future::join_all(probes).await
}

fn unhealthy(endpoint: &str, error: String) -> EndpointHealth {
    EndpointHealth {
        endpoint: endpoint.to_owned(),
        healthy: false,
        cluster_id: None,
        error: Some(error),
    }
}

/// What a node learns at start: the cluster's id (every answer is checked against it later).
#[derive(Debug, Clone, Copy)]
pub struct ClusterFacts {
    pub cluster_id: u64,
}

/// The checks before a node leads through etcd, each refused with the flag to change: the
/// endpoints answer (waiting up to `START_WAIT` for the first) and belong to one cluster, the
/// cluster grants `ttl` itself (etcd silently raises a TTL below its minimum, which would
/// break the node's deadline arithmetic), and the prefix is empty (then claimed for this
/// database) or already this database's.
pub async fn check_cluster(
    settings: &EtcdSettings,
    ttl: Duration,
    database_token: &str,
) -> Result<ClusterFacts, EtcdError> {
    let started = Instant::now();
    let answered = loop {
        let health = endpoint_health(settings).await;
        // A refused user or password does not get better by waiting.
        if let Some(refused) = health
            .iter()
            .find(|h| h.error.as_deref().is_some_and(|e| e.contains("authentication failed")))
        {
            return Err(EtcdError::AuthFailed {
                user: settings.user.as_ref().map(|(user, _)| user.clone()).unwrap_or_default(),
                endpoint: refused.endpoint.clone(),
                reason: refused.error.clone().unwrap_or_default(),
            });
        }
        if health.iter().any(|h| h.cluster_id.is_some()) {
            break health;
        }
        if started.elapsed() >= START_WAIT {
            let reasons = health
                .iter()
                .map(|h| format!("{}: {}", h.endpoint, h.error.as_deref().unwrap_or("")))
                .collect::<Vec<_>>()
                .join("; ");
            return Err(EtcdError::Unreachable {
                waited_s: START_WAIT.as_secs(),
                reasons,
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let mut clusters: Vec<(&str, &str)> = answered
        .iter()
        .filter_map(|h| Some((h.cluster_id.as_deref()?, h.endpoint.as_str())))
        .collect();
    clusters.sort();
    if clusters.windows(2).any(|w| w[0].0 != w[1].0) {
        let listed = clusters
            .iter()
            .map(|(id, endpoint)| format!("{endpoint} is in cluster {id}"))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(EtcdError::MixedClusters(listed));
    }
    let cluster_id = u64::from_str_radix(clusters[0].0, 16).unwrap_or_default();
    for h in answered.iter().filter(|h| h.cluster_id.is_none()) {
        tracing::warn!(endpoint = %h.endpoint, error = h.error.as_deref().unwrap_or(""), "an etcd endpoint does not answer; going on with the others");
    }

    let refused = |doing: &'static str| {
        move |e: etcd_client::Error| EtcdError::Refused {
            doing,
            reason: e.to_string(),
        }
    };
    let (mut client, _) = connect_one(settings, PROBE_TIMEOUT, Some(cluster_id))
        .await
        .map_err(refused("connect"))?;
    check_ttl(&mut client, ttl).await?;
    claim_prefix(&mut client, &settings.prefix, database_token).await?;
    Ok(ClusterFacts { cluster_id })
}

async fn check_ttl(client: &mut Client, ttl: Duration) -> Result<(), EtcdError> {
    let requested = ttl.as_secs() as i64;
    let granted = client
        .lease_grant(requested, None)
        .await
        .map_err(|e| EtcdError::Refused {
            doing: "grant a probe lease",
            reason: e.to_string(),
        })?;
    let _ = client.lease_revoke(granted.id()).await;
    if granted.ttl() > requested {
        return Err(EtcdError::TtlBelowMinimum {
            requested_ms: ttl.as_millis() as u64,
            granted_s: granted.ttl(),
        });
    }
    Ok(())
}

async fn claim_prefix(client: &mut Client, prefix: &str, database_token: &str) -> Result<(), EtcdError> {
    let keys = Keys::new(prefix);
    let refused = |doing: &'static str| {
        move |e: etcd_client::Error| EtcdError::Refused {
            doing,
            reason: e.to_string(),
        }
    };
    // Twice at most: a node that finds the prefix empty claims it, and a claim lost to another
    // node of the same database finds it theirs the second time.
    for _ in 0..2 {
        let listing = client
            .get(
                prefix,
                Some(GetOptions::new().with_prefix().with_keys_only().with_limit(100)),
            )
            .await
            .map_err(refused("list the prefix"))?;
        let present: Vec<Vec<u8>> = listing.kvs().iter().map(|kv| kv.key().to_vec()).collect();
        let owner = client
            .get(keys.owner(), None)
            .await
            .map_err(refused("read the owner key"))?;
        let owner_value = owner.kvs().first().map(|kv| kv.value().to_vec());
        match judge_prefix(&keys, &present, owner_value.as_deref(), database_token) {
            Ok(PrefixState::Ours) => return Ok(()),
            Ok(PrefixState::Empty) => {
                let value = serde_json::to_vec(&keys::Owner {
                    format: keys::FORMAT.into(),
                    database_token: database_token.into(),
                })
                .expect("the owner key serialises");
                let claim = Txn::new()
                    .when([Compare::create_revision(keys.owner(), CompareOp::Equal, 0)])
                    .and_then([TxnOp::put(keys.owner(), value, None::<PutOptions>)]);
                let claimed = client.txn(claim).await.map_err(refused("claim the prefix"))?;
                if claimed.succeeded() {
                    tracing::info!(prefix, "claimed the etcd prefix for this database");
                    return Ok(());
                }
            }
            Err(PrefixProblem::Foreign(found)) => {
                return Err(EtcdError::ForeignPrefix {
                    prefix: prefix.into(),
                    keys: found.join(", "),
                })
            }
            Err(PrefixProblem::UnknownOwner(value)) => {
                return Err(EtcdError::UnknownOwner {
                    prefix: prefix.into(),
                    value,
                })
            }
            Err(PrefixProblem::OtherDatabase { token }) => {
                return Err(EtcdError::OtherDatabase {
                    prefix: prefix.into(),
                    token,
                })
            }
        }
    }
    Err(EtcdError::Refused {
        doing: "claim the prefix",
        reason: "the owner key changed twice while it was read".into(),
    })
}
