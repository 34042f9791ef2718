//! The election's decisions apart from its I/O: fed what the lease store answered, what the
//! handlers saw and the time, it says what to do next. `ha::node` executes; nothing here reads a
//! clock, opens a connection or writes a file.
//!
//! The shape is raft-rs's `RawNode`/`Ready`: `step(event, now)` returns the actions, at most
//! one store request among them, and the next request waits for the answer to the last. Why the
//! decisions keep two writers apart is in docs/ARCHITECTURE.md ("Why two writers cannot happen").

mod record;
#[cfg(test)]
mod tests;

use std::time::{Duration, Instant};

pub use record::{Divergence, Record};

use crate::ha::store::LeaseRow;

/// How the election paces itself (validated in config.rs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTiming {
    pub ttl: Duration,
    /// The leader renews this often.
    pub renew_every: Duration,
    /// Followers and candidates try to acquire this often (and at once on a release).
    pub poll_every: Duration,
    /// How long a renew keeps this node leader, counted from before it was sent: the TTL less
    /// a safety margin, so the node fences itself before any other node may take over
    /// (docs/ARCHITECTURE.md has the argument).
    pub lead_for: Duration,
    /// A connect or store request unanswered for this long means the store is lost: one renew
    /// interval (a leader that cannot renew within it is unhealthy), at least 500 ms so a
    /// short renew interval does not turn every slow commit into a failover. Always below
    /// `lead_for`, so a cut-off leader gives up before its deadline would.
    pub query_timeout: Duration,
}

impl LeaseTiming {
    /// The safety margin is a fifth of the TTL.
    pub fn new(ttl: Duration, renew_every: Duration, poll_every: Duration) -> Self {
        Self {
            ttl,
            renew_every,
            poll_every,
            lead_for: ttl - ttl / 5,
            query_timeout: renew_every.max(Duration::from_millis(500)).min(ttl - ttl / 5),
        }
    }

    /// The wait before the next attempt after `failures` failures in a row: it backs off, so a
    /// store that is down is not hammered every poll interval, and never beyond
    /// `MAX_RECONNECT_BACKOFF`, so the node is back soon after the store accepts again.
    pub fn backoff(&self, failures: u32) -> Duration {
        (self.poll_every * 2u32.saturating_pow(failures.min(6))).min(MAX_RECONNECT_BACKOFF)
    }
}

/// Longest wait between attempts while the store is unreachable (five refused connections a
/// second cost it nothing; a fifth of a second is the most a recovery waits for the node).
pub const MAX_RECONNECT_BACKOFF: Duration = Duration::from_millis(200);

/// What happened, as the driver tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The wake-up time the election asked for has come.
    Tick,
    /// The store said a leader released the lease: try at once.
    ReleaseHeard,
    /// A session to the store is open.
    Connected,
    /// The acquisition request took the lease at a new epoch.
    Acquired(LeaseRow),
    /// The acquisition request found the lease held by another node.
    Held(LeaseRow),
    /// The renew request extended the lease.
    Renewed(LeaseRow),
    /// The renew request was refused: the lease as it stands.
    Refused(LeaseRow),
    /// The read request's answer.
    RowRead(LeaseRow),
    /// The release request's answer: whether the lease was still this node's to release.
    Released(bool),
    /// The store is lost: a request failed or went unanswered, or the session ended.
    Lost(Loss),
    /// A protected write found the lease no longer naming this node at `epoch`.
    FencedWrite { epoch: i64 },
    /// The node is stopping: never lead again; release what is held.
    Shutdown,
}

/// How the store was lost; each has the reason the audit trail gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    ConnectRefused,
    ConnectUnanswered,
    QueryFailed,
    QueryUnanswered,
    SessionEnded,
}

impl Loss {
    pub fn reason(self) -> &'static str {
        match self {
            Loss::ConnectRefused => "the database refused or closed the connection",
            Loss::ConnectUnanswered => "the database did not answer a connection attempt",
            Loss::QueryFailed => "a lease query failed",
            Loss::QueryUnanswered => "a lease query went unanswered",
            // The same termination reaches the driver either as a failed request or as the
            // end of the session's notices: both are named the same way.
            Loss::SessionEnded => "the lease session ended",
        }
    }
}

/// What to do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open a session to the store; answer `Connected` or `Lost`.
    Connect,
    /// Answer `Acquired`, `Held` or `Lost`.
    TryAcquire,
    /// Answer `Renewed`, `Refused` or `Lost`.
    Renew { epoch: i64 },
    /// Answer `RowRead` or `Lost`.
    Read,
    /// Answer `Released` (or `Lost`).
    Release { epoch: i64 },
    /// Close the session without waiting for anything (a divergence: a lease still naming it
    /// is free at once instead of after its, possibly rewritten, expiry).
    CloseSession,
    /// Write this to the audit trail.
    Audit(Record),
    /// The view the handlers read has changed.
    Notify(Snapshot),
    /// Nothing more will happen: the node has resigned.
    Stop,
}

/// The term this node leads, until its local deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Term {
    pub epoch: i64,
    /// Past this instant the node is not leader, whether or not it heard back.
    pub until: Instant,
}

/// What the handlers see: leadership, the lease as last seen, reachability, what went wrong.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub lease: Option<LeaseRow>,
    pub term: Option<Term>,
    /// The epoch this node last led at (the status shows it when no lease was seen).
    pub last_epoch: i64,
    /// When the lease was last acquired or renewed, while leading.
    pub renewed_at: Option<Instant>,
    /// The last store request was answered (false until one is).
    pub reachable: bool,
    /// The last divergence this node found while leading, since it started.
    pub split_brain: Option<Divergence>,
    /// Configuration problems found while running, newest last.
    pub warnings: Vec<String>,
}

impl Snapshot {
    /// The epoch this node leads at, if the local deadline has not passed at `now`.
    pub fn leader_epoch(&self, now: Instant) -> Option<i64> {
        self.term.filter(|term| now < term.until).map(|term| term.epoch)
    }
}

/// Step-down reasons recorded in the audit trail.
pub const DEADLINE_PASSED: &str = "the local deadline passed before a renew succeeded";
pub const EXPIRED_BEFORE_RENEW: &str = "the lease expired before this renew";
pub const SPLIT_BRAIN: &str = "split brain: the lease row names another holder or epoch";
pub const FENCED_WRITE: &str = "a protected write found the lease no longer names this node at its epoch";

/// What a read is for: the answer is judged against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadFor {
    /// A leader between renews checks its lease still stands.
    Check { epoch: i64 },
    /// A refused renew found the lease naming this node still (it waited on a rewrite's lock
    /// and saw the lease as its statement first did): read again to see what won.
    AfterRefusal { epoch: i64 },
    /// A fenced write ended the term: tell a rewrite from an expiry.
    Fenced { epoch: i64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Request {
    Connect,
    Acquire,
    Renew { epoch: i64 },
    Read(ReadFor),
    Release { epoch: i64 },
}

impl Request {
    fn action(self) -> Action {
        match self {
            Request::Connect => Action::Connect,
            Request::Acquire => Action::TryAcquire,
            Request::Renew { epoch } => Action::Renew { epoch },
            Request::Read(_) => Action::Read,
            Request::Release { epoch } => Action::Release { epoch },
        }
    }
}

/// Whether the store is reachable, as last recorded in the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quorum {
    /// No request has been answered yet.
    Unknown,
    Held,
    /// Lost at this instant (for the outage length).
    Lost(Instant),
}

/// One node's election.
#[derive(Debug, Clone)]
pub struct Election {
    node_id: String,
    address: String,
    timing: LeaseTiming,
    view: Snapshot,
    connected: bool,
    /// The request awaiting its answer, and when it was sent.
    in_flight: Option<(Request, Instant)>,
    /// The epoch this node acted as leader at whose end is not yet audited.
    led: Option<i64>,
    /// Every epoch this node led at is at most this: a term is never led twice.
    highest_led: i64,
    /// The last local epoch a split brain was recorded for: each divergence once.
    diverged_from: Option<i64>,
    quorum: Quorum,
    /// Store requests lost in a row since the last answered one.
    failures: u32,
    next_renew: Option<Instant>,
    wake_at: Option<Instant>,
    /// A fenced write ended the term at this epoch; a read will tell why.
    fenced: Option<i64>,
    resigned: bool,
    stopped: bool,
}

impl Election {
    pub fn new(node_id: impl Into<String>, address: impl Into<String>, timing: LeaseTiming, now: Instant) -> Self {
        Self {
            node_id: node_id.into(),
            address: address.into(),
            timing,
            view: Snapshot::default(),
            connected: false,
            in_flight: None,
            led: None,
            highest_led: 0,
            diverged_from: None,
            quorum: Quorum::Unknown,
            failures: 0,
            next_renew: None,
            wake_at: Some(now),
            fenced: None,
            resigned: false,
            stopped: false,
        }
    }

    /// When to send the next `Tick`; None while a request is in flight or after `Stop`.
    pub fn wake_at(&self) -> Option<Instant> {
        if self.stopped || self.in_flight.is_some() {
            return None;
        }
        self.wake_at
    }

    /// What the handlers see now.
    pub fn snapshot(&self) -> &Snapshot {
        &self.view
    }

    /// Store requests lost in a row (the driver logs the first of a series louder).
    pub fn failures(&self) -> u32 {
        self.failures
    }

    pub fn timing(&self) -> LeaseTiming {
        self.timing
    }

    /// Takes one event at `now`; returns what to do, at most one store request, last.
    pub fn step(&mut self, event: Event, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if self.stopped {
            return out;
        }
        let before = self.view.clone();
        // A lost store is recorded as such, not as a deadline that passed while its request
        // went unanswered: the trail reads lost, then the step-down for that reason.
        let lost = matches!(event, Event::Lost(_));
        if !lost {
            self.check_deadline(now, &mut out);
        }
        let mut request = self.handle(event, now, &mut out);
        if lost {
            self.check_deadline(now, &mut out);
        }
        if request.is_none() && self.resigned && !self.stopped && self.in_flight.is_none() {
            request = self.resign(now);
        }
        if self.view != before {
            out.push(Action::Notify(self.view.clone()));
        }
        match request {
            Some(request) => {
                self.in_flight = Some((request, now));
                out.push(request.action());
            }
            None if self.stopped => out.push(Action::Stop),
            None => {}
        }
        out
    }

    /// Never leader past the local deadline: the term ends the moment it passes.
    fn check_deadline(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.view.term.is_some_and(|term| now >= term.until) {
            self.end_term();
            self.audit_step_down(DEADLINE_PASSED, out);
        }
    }

    fn handle(&mut self, event: Event, now: Instant, out: &mut Vec<Action>) -> Option<Request> {
        match event {
            Event::Tick | Event::ReleaseHeard => {
                if self.in_flight.is_some() {
                    return None;
                }
                self.start_round(now, out)
            }
            Event::FencedWrite { epoch } => {
                // The last term this node led, even if its deadline has passed since the write
                // was refused: the read still tells a rewrite from an expiry.
                if epoch == self.highest_led && self.diverged_from != Some(epoch) && self.fenced.is_none() {
                    if self.view.term.is_some_and(|term| term.epoch == epoch) {
                        self.end_term();
                    }
                    self.fenced = Some(epoch);
                    if self.in_flight.is_none() {
                        return self.start_round(now, out);
                    }
                }
                None
            }
            Event::Shutdown => {
                self.resigned = true;
                if self.in_flight.is_none() {
                    return self.resign(now);
                }
                None
            }
            Event::Lost(loss) => {
                let Some((request, _)) = self.in_flight.take() else {
                    // The session's notices ended while nothing was in flight.
                    if !self.connected {
                        return None;
                    }
                    return self.lose_store(loss, now, out);
                };
                if matches!(request, Request::Release { .. }) {
                    self.stopped = true;
                    return None;
                }
                self.lose_store(loss, now, out)
            }
            answer => self.answer(answer, now, out),
        }
    }

    /// An answer to the request in flight; an answer to nothing asked is ignored.
    fn answer(&mut self, answer: Event, now: Instant, out: &mut Vec<Action>) -> Option<Request> {
        let (request, sent_at) = self.in_flight?;
        let matches = matches!(
            (&answer, request),
            (Event::Connected, Request::Connect)
                | (Event::Acquired(_) | Event::Held(_), Request::Acquire)
                | (Event::Renewed(_) | Event::Refused(_), Request::Renew { .. })
                | (Event::RowRead(_), Request::Read(_))
                | (Event::Released(_), Request::Release { .. })
        );
        if !matches {
            return None;
        }
        self.in_flight = None;
        if let Event::Connected = answer {
            self.connected = true;
            return self.next_round(now, out);
        }
        if let Event::Released(released) = answer {
            if let (true, Request::Release { epoch }) = (released, request) {
                out.push(Action::Audit(Record::Released { epoch }));
                self.led = None;
            }
            self.stopped = true;
            return None;
        }
        // Before any acquisition, so the audit trail reads: lost, restored, acquired.
        self.quorum_held(now, out);
        self.failures = 0;
        match (answer, request) {
            (Event::Acquired(row), _) => self.acquired(row, sent_at, now, out),
            (Event::Held(row), _) => self.held(row, now, out),
            (Event::Renewed(row), Request::Renew { epoch }) => {
                if self.view.leader_epoch(now) == Some(epoch) {
                    self.lead(row, sent_at, now);
                    return self.rest(now);
                }
                // The term ended while the renew was in flight: it is never resumed.
                self.unled(now, out)
            }
            (Event::Refused(row), Request::Renew { epoch }) => {
                // A refused renew ends the term at once; the re-read only tells why.
                if self.view.term.is_some_and(|term| term.epoch == epoch) {
                    self.end_term();
                }
                if row.names(&self.node_id, epoch) {
                    return Some(Request::Read(ReadFor::AfterRefusal { epoch }));
                }
                self.lost_lease(epoch, row, now, out)
            }
            (Event::RowRead(row), Request::Read(purpose)) => self.row_read(purpose, row, now, out),
            _ => None,
        }
    }

    fn row_read(&mut self, purpose: ReadFor, row: LeaseRow, now: Instant, out: &mut Vec<Action>) -> Option<Request> {
        match purpose {
            ReadFor::Check { epoch } => {
                if row.valid && row.names(&self.node_id, epoch) {
                    self.view.lease = Some(row);
                    self.view.reachable = true;
                    if self.view.leader_epoch(now) == Some(epoch) {
                        return self.rest(now);
                    }
                    return self.unled(now, out);
                }
                self.lost_lease(epoch, row, now, out)
            }
            ReadFor::AfterRefusal { epoch } => self.lost_lease(epoch, row, now, out),
            ReadFor::Fenced { epoch } => {
                if !row.names(&self.node_id, epoch) {
                    return self.diverged(epoch, row, now, out);
                }
                self.audit_step_down(FENCED_WRITE, out);
                self.unled(now, out)
            }
        }
    }

    /// The next round at once, or the resignation.
    fn next_round(&mut self, now: Instant, out: &mut Vec<Action>) -> Option<Request> {
        if self.resigned {
            return self.resign(now);
        }
        self.start_round(now, out)
    }

    /// A leader renews when due and otherwise reads the lease to check it still names this
    /// node at its epoch; any other node tries to acquire.
    fn start_round(&mut self, now: Instant, out: &mut Vec<Action>) -> Option<Request> {
        if self.resigned {
            return self.resign(now);
        }
        if !self.connected {
            return Some(Request::Connect);
        }
        match self.view.leader_epoch(now) {
            Some(epoch) if self.next_renew.is_none_or(|due| now >= due) => Some(Request::Renew { epoch }),
            Some(epoch) => Some(Request::Read(ReadFor::Check { epoch })),
            None => self.unled(now, out),
        }
    }

    /// Not leading: first tell why a fenced write ended the term, then try to acquire.
    fn unled(&mut self, now: Instant, out: &mut Vec<Action>) -> Option<Request> {
        if self.resigned {
            return self.resign(now);
        }
        if let Some(epoch) = self.fenced.take() {
            return Some(Request::Read(ReadFor::Fenced { epoch }));
        }
        self.audit_step_down(DEADLINE_PASSED, out);
        Some(Request::Acquire)
    }

    fn acquired(&mut self, row: LeaseRow, sent_at: Instant, now: Instant, out: &mut Vec<Action>) -> Option<Request> {
        if row.epoch <= self.highest_led {
            // A store must never grant an epoch twice; if one does, this node does not lead
            // at it again (its writes of that epoch were fenced long ago).
            self.follow(row);
            return self.rest(now);
        }
        let epoch = row.epoch;
        self.view.warnings.clear();
        self.lead(row, sent_at, now);
        self.highest_led = epoch;
        self.led = Some(epoch);
        out.push(Action::Audit(Record::Acquired { epoch }));
        if self.resigned {
            return self.resign(now);
        }
        self.rest(now)
    }

    fn held(&mut self, row: LeaseRow, now: Instant, out: &mut Vec<Action>) -> Option<Request> {
        if row.live_holder() == Some(self.node_id.as_str())
            && row.holder_address.as_deref() != Some(self.address.as_str())
        {
            // Not this process's session (it would have been re-acquired), nor an older
            // session of this process (same address) the store has not yet seen close:
            // another process runs with the same node id, and this one cannot lead.
            let warning = format!(
                "another process holds the leader lease under this node's id `{}` (its API at {}); node ids must be unique: stop one of them",
                self.node_id,
                row.holder_address.as_deref().unwrap_or("unknown")
            );
            if !self.view.warnings.contains(&warning) {
                self.view.warnings.push(warning.clone());
                out.push(Action::Audit(Record::DuplicateNodeId { warning }));
            }
        }
        self.follow(row);
        self.rest(now)
    }

    /// The leader at `epoch` found `row` no longer its valid lease. Another holder or epoch is
    /// a divergence (split brain); the same holder and epoch, expired, is an ordinary loss:
    /// step down and go on to the election.
    fn lost_lease(&mut self, epoch: i64, row: LeaseRow, now: Instant, out: &mut Vec<Action>) -> Option<Request> {
        if !row.names(&self.node_id, epoch) {
            return self.diverged(epoch, row, now, out);
        }
        if self.view.term.is_some_and(|term| term.epoch == epoch) {
            self.end_term();
        }
        self.audit_step_down(EXPIRED_BEFORE_RENEW, out);
        self.unled(now, out)
    }

    /// A split brain: this node led at `epoch`, the lease says otherwise. Stop leading, record
    /// it once, close the session so a lease still naming it frees at once, and reconnect.
    fn diverged(&mut self, epoch: i64, row: LeaseRow, now: Instant, out: &mut Vec<Action>) -> Option<Request> {
        if self.view.term.is_some_and(|term| term.epoch == epoch) {
            self.end_term();
        }
        self.fenced = None;
        if self.diverged_from != Some(epoch) {
            self.diverged_from = Some(epoch);
            let divergence = Divergence {
                detected_at: now,
                local_epoch: epoch,
                store_epoch: row.epoch,
                store_holder_id: row.holder_id.clone(),
            };
            self.view.split_brain = Some(divergence.clone());
            out.push(Action::Audit(Record::SplitBrain(divergence)));
        }
        self.view.lease = Some(row);
        self.view.reachable = true;
        self.audit_step_down(SPLIT_BRAIN, out);
        out.push(Action::CloseSession);
        self.connected = false;
        self.wake_at = Some(now);
        if self.resigned {
            return self.resign(now);
        }
        None
    }

    /// No store, no leader: leadership ends now, the loss is audited once per outage, and
    /// retries back off.
    fn lose_store(&mut self, loss: Loss, now: Instant, out: &mut Vec<Action>) -> Option<Request> {
        self.connected = false;
        self.end_term();
        self.view.reachable = false;
        self.fenced = None;
        if !matches!(self.quorum, Quorum::Lost(_)) {
            out.push(Action::Audit(Record::QuorumLost { reason: loss.reason() }));
            self.quorum = Quorum::Lost(now);
        }
        self.audit_step_down(loss.reason(), out);
        self.failures = self.failures.saturating_add(1);
        self.wake_at = Some(now + self.timing.backoff(self.failures));
        if self.resigned {
            self.stopped = true;
        }
        None
    }

    fn quorum_held(&mut self, now: Instant, out: &mut Vec<Action>) {
        if let Quorum::Lost(since) = self.quorum {
            out.push(Action::Audit(Record::QuorumRestored {
                outage: now.saturating_duration_since(since),
            }));
        }
        self.quorum = Quorum::Held;
    }

    /// Records a successful acquire or renew whose request left at `sent_at`.
    fn lead(&mut self, row: LeaseRow, sent_at: Instant, now: Instant) {
        self.view.last_epoch = row.epoch;
        self.view.term = Some(Term {
            epoch: row.epoch,
            until: sent_at + self.timing.lead_for,
        });
        self.view.lease = Some(row);
        self.view.renewed_at = Some(now);
        self.view.reachable = true;
        self.fenced = None;
        self.next_renew = Some(sent_at + self.timing.renew_every);
    }

    /// Records the lease as another node holds it (or nobody): this node does not lead.
    fn follow(&mut self, row: LeaseRow) {
        self.view.lease = Some(row);
        self.end_term();
        self.view.reachable = true;
    }

    fn end_term(&mut self) {
        self.view.term = None;
        self.view.renewed_at = None;
        self.next_renew = None;
    }

    /// Audits the end of the term this node last led, once, if it no longer leads it.
    fn audit_step_down(&mut self, reason: &'static str, out: &mut Vec<Action>) {
        if let Some(epoch) = self.led {
            if self.view.term.map(|term| term.epoch) != Some(epoch) {
                out.push(Action::Audit(Record::SteppedDown { epoch, reason }));
                self.led = None;
            }
        }
    }

    /// Settles until the next round: a leader reads its lease back every poll interval but
    /// never sleeps past its renew or its deadline.
    fn rest(&mut self, now: Instant) -> Option<Request> {
        let mut wait = self.timing.poll_every;
        if let (Some(term), Some(due)) = (self.view.term, self.next_renew) {
            wait = wait
                .min(due.saturating_duration_since(now))
                .min(term.until.saturating_duration_since(now));
        }
        self.wake_at = Some(now + wait);
        None
    }

    /// Shutdown: stop leading now and for good, releasing the lease if this node holds it.
    fn resign(&mut self, now: Instant) -> Option<Request> {
        let epoch = self.view.leader_epoch(now);
        self.end_term();
        match epoch {
            Some(epoch) if self.connected => Some(Request::Release { epoch }),
            _ => {
                self.stopped = true;
                None
            }
        }
    }
}
