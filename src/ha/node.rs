//! The lease loop: executes what the election decides against a lease store, feeds the answers
//! back, publishes the election's view to the handlers and hands audit records to a writer
//! thread. It decides nothing itself (`ha::election` does).

use std::{
    sync::{mpsc as sync_mpsc, Arc},
    time::Instant,
};

use tokio::sync::mpsc;

use crate::{
    audit::AuditLog,
    ha::{
        election::{Action, Election, Event, Loss, Record},
        store::{Attempt, LeaseSession, LeaseStore, Notice, Renewal, StoreError},
        NodeState,
    },
};

pub use crate::ha::election::LeaseTiming;

/// Runs until the election stops (after `NodeState::resign`): if this node leads then, it
/// releases the lease first, so a successor can take over before
/// this process exits. Every audit record is written before it returns.
pub async fn run_lease_loop<S: LeaseStore>(
    store: S,
    address: String,
    state: Arc<NodeState>,
    mut inbox: mpsc::UnboundedReceiver<Event>,
    audit: Arc<AuditLog>,
    timing: LeaseTiming,
) {
    let writer = AuditWriter::spawn(audit);
    let mut election = Election::new(state.node_id.clone(), address, timing, Instant::now());
    let mut session: Option<S::Session> = None;
    let mut next = Some(Event::Tick);
    'steps: loop {
        let event = match next.take() {
            Some(event) => event,
            None => wait_for_event(&election, &mut session, &mut inbox).await,
        };
        if matches!(event, Event::Lost(_)) {
            session = None;
        }
        let failed_before = election.failures();
        for action in election.step(event, Instant::now()) {
            match action {
                Action::Audit(record) => record_and_log(&writer, record),
                Action::Notify(snapshot) => state.publish(snapshot),
                Action::CloseSession => session = None,
                Action::Stop => break 'steps,
                request => {
                    // A handler's event (a shutdown, a fenced write) is stepped while the request
                    // is out, so a stopping node never starts another one.
                    let renewing = matches!(request, Action::Renew { .. }).then(Instant::now);
                    let answer = perform(&store, &mut session, request, timing, failed_before);
                    tokio::pin!(answer);
                    let answer = loop {
                        tokio::select! {
                            answer = &mut answer => break answer,
                            Some(event) = inbox.recv() => {
                                for side in election.step(event, Instant::now()) {
                                    match side {
                                        Action::Audit(record) => record_and_log(&writer, record),
                                        Action::Notify(snapshot) => state.publish(snapshot),
                                        // Nothing else can come while a request is out.
                                        other => tracing::warn!(?other, "ignored an action while a request was out"),
                                    }
                                }
                            }
                        }
                    };
                    if let Some(started) = renewing {
                        state.observe_renew(started.elapsed());
                    }
                    next = Some(answer);
                }
            }
        }
        if failed_before > 0 && election.failures() == 0 {
            tracing::info!(failures = failed_before, "the lease session works again");
        }
    }
    // The session closes first: a successor need not wait for the last records to be written.
    drop(session);
    writer.finish().await;
}

fn record_and_log(writer: &AuditWriter, record: Record) {
    record.log();
    writer.write(record);
}

/// Waits for the election's wake-up time, a notice from the store or an event from a handler.
async fn wait_for_event<S: LeaseSession>(
    election: &Election,
    session: &mut Option<S>,
    inbox: &mut mpsc::UnboundedReceiver<Event>,
) -> Event {
    let wake = async {
        match election.wake_at() {
            Some(at) => tokio::time::sleep_until(at.into()).await,
            None => std::future::pending().await,
        }
    };
    let notice = async {
        match session.as_mut() {
            Some(active) => active.next_notice().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = wake => Event::Tick,
        notice = notice => match notice {
            Notice::Released => Event::ReleaseHeard,
            Notice::Ended => Event::Lost(Loss::SessionEnded),
        },
        // Every sender gone means the node is going away: stop as on a signal.
        event = inbox.recv() => event.unwrap_or(Event::Shutdown),
    }
}

/// Sends one request to the store and turns its answer (or its silence) into an event. A
/// request unanswered within the query timeout counts as losing the store.
async fn perform<S: LeaseStore>(
    store: &S,
    session: &mut Option<S::Session>,
    request: Action,
    timing: LeaseTiming,
    failed_before: u32,
) -> Event {
    let timeout = timing.query_timeout;
    let unanswered = |loss: Loss| {
        lost(
            loss,
            &format!("no answer within {} ms", timeout.as_millis()),
            failed_before,
        )
    };
    if let Action::Connect = request {
        return match tokio::time::timeout(timeout, store.open()).await {
            Ok(Ok(opened)) => {
                *session = Some(opened);
                Event::Connected
            }
            Ok(Err(error)) => lost(Loss::ConnectRefused, &error, failed_before),
            Err(_) => lost(
                Loss::ConnectUnanswered,
                &format!("no connection within {} ms", timeout.as_millis()),
                failed_before,
            ),
        };
    }
    let Some(active) = session.as_mut() else {
        return lost(Loss::SessionEnded, &"no session", failed_before);
    };
    if let Action::Release { epoch } = request {
        // A release may wait for protected writes still in flight; it gets the whole term.
        return match tokio::time::timeout(timing.lead_for, active.release(epoch)).await {
            Ok(Ok(true)) => Event::Released(true),
            Ok(Ok(false)) => {
                tracing::warn!(epoch, "the lease had already moved on; nothing to release");
                Event::Released(false)
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "could not release the lease; it expires by itself");
                Event::Released(false)
            }
            Err(_) => {
                tracing::warn!("releasing the lease timed out; it expires by itself");
                Event::Released(false)
            }
        };
    }
    let answer = async {
        Ok::<_, StoreError>(match request {
            Action::TryAcquire => match active.try_acquire().await? {
                Attempt::Acquired(row) => Event::Acquired(row),
                Attempt::Held(row) => Event::Held(row),
            },
            Action::Renew { epoch } => match active.renew(epoch).await? {
                Renewal::Renewed(row) => Event::Renewed(row),
                Renewal::Refused(row) => Event::Refused(row),
            },
            Action::Read => Event::RowRead(active.read().await?),
            other => unreachable!("not a store request: {other:?}"),
        })
    };
    match tokio::time::timeout(timeout, answer).await {
        Ok(Ok(event)) => event,
        Ok(Err(error @ StoreError::SessionEnded(_))) => lost(Loss::SessionEnded, &error, failed_before),
        Ok(Err(error)) => lost(Loss::QueryFailed, &error, failed_before),
        Err(_) => unanswered(Loss::QueryUnanswered),
    }
}

/// Logs the first failure of a series at warn and the rest at debug, so an outage does not
/// flood the log.
fn lost(loss: Loss, error: &dyn std::fmt::Display, failed_before: u32) -> Event {
    if failed_before == 0 {
        tracing::warn!(%error, reason = loss.reason(), "cannot reach the database for the lease; retrying with backoff");
    } else {
        tracing::debug!(%error, failed_before, "still cannot reach the database");
    }
    Event::Lost(loss)
}

/// Writes the election's audit records in order on a thread of its own, so an fsync never
/// delays a renew on the loop's thread.
struct AuditWriter {
    records: sync_mpsc::Sender<Record>,
    thread: std::thread::JoinHandle<()>,
}

impl AuditWriter {
    fn spawn(audit: Arc<AuditLog>) -> Self {
        let (records, inbox) = sync_mpsc::channel::<Record>();
        let thread = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || {
                for record in inbox {
                    // A failed write must not stop the election: it is logged, and the audit
                    // health in the status shows it (backups and restores are refused then).
                    if let Err(error) = audit.record(record.event_type(), record.details()) {
                        tracing::error!(%error, event_type = record.event_type().as_str(), "could not write an audit event");
                    }
                }
            })
            .expect("spawn the audit writer thread");
        Self { records, thread }
    }

    fn write(&self, record: Record) {
        // The thread ends only when this sender is dropped.
        let _ = self.records.send(record);
    }

    /// Waits until every record sent is written.
    async fn finish(self) {
        drop(self.records);
        let thread = self.thread;
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
}
