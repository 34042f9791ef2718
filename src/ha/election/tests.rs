//! The election without a database: tables of event sequences, and property tests that drive
//! it against a simulated lease store under random faults and check its invariants.

use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;

const TTL: Duration = Duration::from_millis(2_000);

fn timing() -> LeaseTiming {
    LeaseTiming::new(TTL, Duration::from_millis(500), Duration::from_millis(200))
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn row(holder: &str, epoch: i64, valid: bool) -> LeaseRow {
    LeaseRow::held_by(holder, epoch, valid)
}

fn audits(actions: &[Action]) -> Vec<Record> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Audit(record) => Some(record.clone()),
            _ => None,
        })
        .collect()
}

/// A leader at `epoch` whose renew, sent at 500 ms, is refused at 501 ms with `lease`: the
/// start, the election and what it did with the refusal.
fn renew_refused(epoch: i64, lease: LeaseRow) -> (Instant, Election, Vec<Action>) {
    let t0 = Instant::now();
    let mut e = leader(epoch, t0);
    e.step(Event::Tick, t0 + ms(500));
    let refused = e.step(Event::Refused(lease), t0 + ms(501));
    (t0, e, refused)
}

fn assert_unaudited(actions: &[Action]) {
    let records = audits(actions);
    assert!(records.is_empty(), "nothing to audit, yet: {records:?}");
}

fn request(actions: &[Action]) -> Option<&Action> {
    actions.last().filter(|a| {
        matches!(
            a,
            Action::Connect | Action::TryAcquire | Action::Renew { .. } | Action::Read | Action::Release { .. }
        )
    })
}

/// A new election for `n1` at `t0`.
fn candidate(t0: Instant) -> Election {
    Election::new("n1", "http://n1", timing(), t0)
}

/// A candidate at `t0` that has connected and asked for the lease, its answer not yet in.
fn acquiring(t0: Instant) -> Election {
    let mut e = candidate(t0);
    e.step(Event::Tick, t0);
    e.step(Event::Connected, t0);
    e
}

/// The one record of a step-down at `epoch` for `reason`.
fn stepped_down(epoch: i64, reason: &'static str) -> Vec<Record> {
    vec![Record::SteppedDown { epoch, reason }]
}

/// The step ended the term at `epoch` for `reason` and asked for the lease again.
#[track_caller]
fn assert_stepped_down_and_retries(actions: &[Action], epoch: i64, reason: &'static str) {
    assert_eq!(audits(actions), stepped_down(epoch, reason));
    assert_eq!(request(actions), Some(&Action::TryAcquire));
}

/// An election for `n1` that has acquired epoch `epoch` at `t0`.
fn leader(epoch: i64, t0: Instant) -> Election {
    let mut e = candidate(t0);
    assert_eq!(request(&e.step(Event::Tick, t0)), Some(&Action::Connect));
    assert_eq!(request(&e.step(Event::Connected, t0)), Some(&Action::TryAcquire));
    let acquired = e.step(Event::Acquired(row("n1", epoch, true)), t0);
    assert_eq!(audits(&acquired), vec![Record::Acquired { epoch }]);
    assert_eq!(e.snapshot().leader_epoch(t0), Some(epoch));
    e
}

#[test]
fn a_first_round_connects_acquires_and_publishes_leadership() {
    let t0 = Instant::now();
    let mut e = leader(1, t0);
    assert_eq!(e.snapshot().term.map(|t| t.until), Some(t0 + timing().lead_for));
    // Between renews the leader reads its lease back, and renews when due.
    assert_eq!(request(&e.step(Event::Tick, t0 + ms(200))), Some(&Action::Read));
    assert!(request(&e.step(Event::RowRead(row("n1", 1, true)), t0 + ms(201))).is_none());
    assert_eq!(
        request(&e.step(Event::Tick, t0 + ms(500))),
        Some(&Action::Renew { epoch: 1 })
    );
    e.step(Event::Renewed(row("n1", 1, true)), t0 + ms(510));
    assert_eq!(
        e.snapshot().term.map(|t| t.until),
        Some(t0 + ms(500) + timing().lead_for)
    );
}

#[test]
fn leadership_ends_at_the_local_deadline_and_the_step_down_is_audited() {
    let t0 = Instant::now();
    let mut e = leader(1, t0);
    let deadline = t0 + timing().lead_for;
    assert_eq!(e.snapshot().leader_epoch(deadline - ms(1)), Some(1));
    // The view alone ends it, with no step: the handlers read it while the loop may be stuck.
    assert_eq!(
        e.snapshot().leader_epoch(deadline),
        None,
        "leader past the local deadline"
    );
    let late = e.step(Event::Tick, deadline);
    assert_eq!(e.snapshot().leader_epoch(deadline), None);
    assert_stepped_down_and_retries(&late, 1, DEADLINE_PASSED);
}

#[test]
fn a_renew_answered_after_the_deadline_does_not_resume_the_term() {
    let t0 = Instant::now();
    let mut e = leader(1, t0);
    e.step(Event::Tick, t0 + ms(500)); // renew sent
    let late = e.step(Event::Renewed(row("n1", 1, true)), t0 + timing().lead_for + ms(1));
    assert_eq!(e.snapshot().leader_epoch(t0 + timing().lead_for + ms(1)), None);
    assert_eq!(
        request(&late),
        Some(&Action::TryAcquire),
        "a new term needs a new epoch"
    );
}

#[test]
fn a_rewritten_lease_is_a_split_brain_audited_once_and_closes_the_session() {
    let (t0, mut e, refused) = renew_refused(2, row("rogue", 900, true));
    let records = audits(&refused);
    assert!(matches!(&records[0], Record::SplitBrain(d) if d.local_epoch == 2 && d.store_epoch == 900));
    assert_eq!(
        records[1],
        Record::SteppedDown {
            epoch: 2,
            reason: SPLIT_BRAIN
        }
    );
    assert!(refused.contains(&Action::CloseSession));
    assert_eq!(e.wake_at(), Some(t0 + ms(501)), "reconnects at once");
    assert_eq!(e.snapshot().split_brain.as_ref().map(|d| d.store_epoch), Some(900));
    // The next rounds see the same rewritten row: no second record.
    e.step(Event::Tick, t0 + ms(502));
    e.step(Event::Connected, t0 + ms(503));
    assert_unaudited(&e.step(Event::Held(row("rogue", 900, true)), t0 + ms(504)));
}

#[test]
fn a_refused_renew_still_naming_this_node_is_read_again_before_it_is_judged() {
    let (t0, mut e, refused) = renew_refused(3, row("n1", 3, true));
    assert_eq!(request(&refused), Some(&Action::Read));
    let expired = e.step(Event::RowRead(row("n1", 3, false)), t0 + ms(502));
    assert_stepped_down_and_retries(&expired, 3, EXPIRED_BEFORE_RENEW);
}

#[test]
fn the_audit_order_is_lost_then_restored_then_acquired() {
    let t0 = Instant::now();
    let mut e = leader(1, t0);
    e.step(Event::Tick, t0 + ms(500));
    let lost = e.step(Event::Lost(Loss::QueryUnanswered), t0 + ms(1_000));
    assert_eq!(
        audits(&lost),
        vec![
            Record::QuorumLost {
                reason: Loss::QueryUnanswered.reason()
            },
            Record::SteppedDown {
                epoch: 1,
                reason: Loss::QueryUnanswered.reason()
            },
        ]
    );
    assert_eq!(e.snapshot().leader_epoch(t0 + ms(1_000)), None);
    assert!(!e.snapshot().reachable);
    // A second failure is not a second outage.
    e.step(Event::Tick, t0 + ms(1_400));
    assert_unaudited(&e.step(Event::Lost(Loss::ConnectRefused), t0 + ms(1_401)));
    e.step(Event::Tick, t0 + ms(1_800));
    e.step(Event::Connected, t0 + ms(1_801));
    let back = e.step(Event::Acquired(row("n1", 2, true)), t0 + ms(1_802));
    assert_eq!(
        audits(&back),
        vec![
            Record::QuorumRestored { outage: ms(802) },
            Record::Acquired { epoch: 2 }
        ]
    );
}

#[test]
fn a_request_unanswered_past_the_deadline_is_recorded_as_a_lost_store() {
    let t0 = Instant::now();
    let mut e = leader(1, t0);
    e.step(Event::Tick, t0 + ms(500));
    let lost = e.step(Event::Lost(Loss::QueryUnanswered), t0 + timing().lead_for + ms(5));
    let reason = Loss::QueryUnanswered.reason();
    assert_eq!(
        audits(&lost),
        vec![Record::QuorumLost { reason }, Record::SteppedDown { epoch: 1, reason }]
    );
}

#[test]
fn retries_back_off_up_to_a_fifth_of_a_second() {
    let t0 = Instant::now();
    let mut e = Election::new("n1", "http://n1", LeaseTiming::new(TTL, ms(500), ms(20)), t0);
    let mut now = t0;
    let mut waits = Vec::new();
    for _ in 0..6 {
        e.step(Event::Tick, now);
        e.step(Event::Lost(Loss::ConnectRefused), now);
        let wake = e.wake_at().expect("a retry");
        waits.push((wake - now).as_millis());
        now = wake;
    }
    assert_eq!(waits, vec![40, 80, 160, 200, 200, 200]);
}

#[test]
fn a_fenced_write_ends_leadership_and_a_read_tells_why() {
    let t0 = Instant::now();
    // The lease merely expired under the write: an ordinary step-down, then an election.
    let mut e = leader(4, t0);
    let fenced = e.step(Event::FencedWrite { epoch: 4 }, t0 + ms(100));
    assert_eq!(e.snapshot().leader_epoch(t0 + ms(100)), None);
    assert_eq!(request(&fenced), Some(&Action::Read));
    let read = e.step(Event::RowRead(row("n1", 4, false)), t0 + ms(101));
    assert_stepped_down_and_retries(&read, 4, FENCED_WRITE);

    // The lease was rewritten: a split brain.
    let mut e = leader(5, t0);
    e.step(Event::FencedWrite { epoch: 5 }, t0 + ms(100));
    let read = e.step(Event::RowRead(row("rogue", 77, true)), t0 + ms(101));
    assert!(matches!(audits(&read)[0], Record::SplitBrain(_)));

    // An older term's fenced write does not end a newer term.
    let mut e = leader(6, t0);
    assert!(e.step(Event::FencedWrite { epoch: 5 }, t0 + ms(100)).is_empty());
    assert_eq!(e.snapshot().leader_epoch(t0 + ms(100)), Some(6));
}

#[test]
fn shutdown_releases_the_lease_and_stops() {
    let t0 = Instant::now();
    let mut e = leader(7, t0);
    let stop = e.step(Event::Shutdown, t0 + ms(10));
    assert_eq!(request(&stop), Some(&Action::Release { epoch: 7 }));
    assert_eq!(e.snapshot().leader_epoch(t0 + ms(10)), None);
    let released = e.step(Event::Released(true), t0 + ms(11));
    assert_eq!(audits(&released), vec![Record::Released { epoch: 7 }]);
    assert_eq!(released.last(), Some(&Action::Stop));
    assert!(e.step(Event::Tick, t0 + ms(12)).is_empty(), "nothing after the stop");
    assert_eq!(e.wake_at(), None);

    // A follower has nothing to release.
    let mut e = candidate(t0);
    assert_eq!(e.step(Event::Shutdown, t0), vec![Action::Stop]);
}

#[test]
fn a_shutdown_during_an_acquisition_releases_what_it_won() {
    let t0 = Instant::now();
    let mut e = acquiring(t0);
    assert!(e.step(Event::Shutdown, t0).is_empty(), "waits for the answer in flight");
    let won = e.step(Event::Acquired(row("n1", 8, true)), t0 + ms(1));
    assert_eq!(request(&won), Some(&Action::Release { epoch: 8 }));
}

#[test]
fn another_process_under_the_same_id_is_warned_about_once() {
    let t0 = Instant::now();
    let mut e = acquiring(t0);
    let imposter = LeaseRow {
        holder_address: Some("http://elsewhere".into()),
        ..row("n1", 3, true)
    };
    let first = e.step(Event::Held(imposter.clone()), t0);
    assert!(matches!(&audits(&first)[..], [Record::DuplicateNodeId { .. }]));
    assert_eq!(e.snapshot().warnings.len(), 1);
    e.step(Event::Tick, t0 + ms(200));
    assert_unaudited(&e.step(Event::Held(imposter), t0 + ms(201)));
    // This node's own older session (same address) is no imposter.
    e.step(Event::Tick, t0 + ms(400));
    assert_unaudited(&e.step(Event::Held(row("n1", 3, true)), t0 + ms(401)));
}

#[test]
fn answers_to_nothing_asked_change_nothing() {
    let t0 = Instant::now();
    let mut e = candidate(t0);
    assert!(e.step(Event::Acquired(row("n1", 1, true)), t0).is_empty());
    assert_eq!(e.snapshot().leader_epoch(t0), None);
}

// ---- property tests against a simulated store ----

/// A lease store as the election's requests see it, with the database clock equal to `now`.
#[derive(Debug)]
struct World {
    holder: Option<String>,
    epoch: i64,
    expires_at: Instant,
    /// The session the holder holds through (this node's sessions are numbered; others: None).
    holder_session: Option<u32>,
    highest_epoch: i64,
    session: Option<u32>,
    sessions_opened: u32,
    down: bool,
}

impl World {
    fn new(now: Instant) -> Self {
        Self {
            holder: None,
            epoch: 0,
            expires_at: now,
            holder_session: None,
            highest_epoch: 0,
            session: None,
            sessions_opened: 0,
            down: false,
        }
    }

    fn row(&self, now: Instant) -> LeaseRow {
        LeaseRow {
            holder_id: self.holder.clone(),
            holder_address: self.holder.as_ref().map(|h| format!("http://{h}")),
            epoch: self.epoch,
            valid: self.expires_at > now,
            expires_in_ms: self.expires_at.saturating_duration_since(now).as_millis() as i64,
        }
    }

    /// As the lease row's SQL judges it: never held, expired, naming no live session (a row
    /// written by hand, or a holder whose session ended), or this very session.
    fn free(&self, now: Instant) -> bool {
        self.holder.is_none()
            || self.expires_at <= now
            || self.holder_session.is_none()
            || (self.holder.as_deref() == Some("n1") && self.holder_session == self.session)
    }

    fn grant(&mut self, holder: &str, session: Option<u32>, now: Instant) {
        self.highest_epoch += 1;
        self.epoch = self.highest_epoch;
        self.holder = Some(holder.into());
        self.holder_session = session;
        self.expires_at = now + TTL;
    }

    fn answer(&mut self, action: &Action, now: Instant) -> Event {
        if self.down {
            self.session = None;
            return Event::Lost(if *action == Action::Connect {
                Loss::ConnectRefused
            } else {
                Loss::QueryFailed
            });
        }
        match *action {
            Action::Connect => {
                self.sessions_opened += 1;
                self.session = Some(self.sessions_opened);
                Event::Connected
            }
            Action::TryAcquire => {
                if self.free(now) {
                    self.grant("n1", self.session, now);
                    Event::Acquired(self.row(now))
                } else {
                    Event::Held(self.row(now))
                }
            }
            Action::Renew { epoch } => {
                let mine =
                    self.holder.as_deref() == Some("n1") && self.epoch == epoch && self.holder_session == self.session;
                if mine && self.expires_at > now {
                    self.expires_at = now + TTL;
                    Event::Renewed(self.row(now))
                } else {
                    Event::Refused(self.row(now))
                }
            }
            Action::Read => Event::RowRead(self.row(now)),
            Action::Release { epoch } => {
                let mine = self.holder.as_deref() == Some("n1") && self.epoch == epoch;
                if mine {
                    self.expires_at = now;
                    self.holder_session = None;
                }
                Event::Released(mine)
            }
            ref other => panic!("not a request: {other:?}"),
        }
    }

    /// Whether a protected write of n1 at `epoch` passes the fence now.
    fn fence_holds(&self, epoch: i64, now: Instant) -> bool {
        self.holder.as_deref() == Some("n1") && self.epoch == epoch && self.expires_at > now
    }
}

/// What happens to the world between the election's steps.
#[derive(Debug, Clone)]
enum Op {
    Advance(u64),
    /// Time passes with no step at all: the loop is stuck (a paused process, a slow fsync).
    Stall(u64),
    Outage,
    Recover,
    /// Another node takes the lease if it is free.
    Steal,
    /// Someone rewrites the row by hand: another holder at a rogue epoch.
    Rewrite,
    /// An administrator terminates this node's session.
    KillSession,
    /// A protected write is attempted.
    Write,
    Shutdown,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1u64..1_500).prop_map(Op::Advance),
        1 => (1u64..3_000).prop_map(Op::Stall),
        1 => Just(Op::Outage),
        2 => Just(Op::Recover),
        1 => Just(Op::Steal),
        1 => Just(Op::Rewrite),
        1 => Just(Op::KillSession),
        3 => Just(Op::Write),
        1 => Just(Op::Shutdown),
    ]
}

/// Everything the run saw, for the invariants.
#[derive(Default)]
struct Trace {
    audits: Vec<Record>,
    /// Epochs a fenced write ended.
    fenced: Vec<i64>,
    /// (instant, epoch) at every point the election believed it led.
    led: Vec<(Instant, i64)>,
}

/// Feeds `event` and every answer to the requests it leads to, all at `now`.
fn run(e: &mut Election, world: &mut World, trace: &mut Trace, event: Event, now: Instant) {
    let mut next = Some(event);
    let mut steps = 0;
    while let Some(event) = next.take() {
        steps += 1;
        assert!(steps < 50, "the election never settles");
        for action in e.step(event, now) {
            match action {
                Action::Audit(record) => trace.audits.push(record),
                Action::Notify(_) | Action::Stop => {}
                Action::CloseSession => world.session = None,
                request => next = Some(world.answer(&request, now)),
            }
        }
        check_leadership(e, world, trace, now);
    }
}

/// The safety invariant, after every step: a node that believes it leads at `epoch` holds a
/// lease at that epoch that the store will not give away before its local deadline, unless
/// the row was rewritten by hand (which the fence then catches).
fn check_leadership(e: &Election, world: &World, trace: &mut Trace, now: Instant) {
    if let Some(epoch) = e.snapshot().leader_epoch(now) {
        let term = e.snapshot().term.expect("a term");
        assert!(now < term.until, "leader past its local deadline");
        assert!(term.until <= now + e.timing().lead_for, "a deadline beyond lead_for");
        if world.holder.as_deref() == Some("n1") && world.epoch == epoch {
            assert!(
                term.until <= world.expires_at,
                "the deadline outlives the store's lease"
            );
        }
        assert!(
            !trace.fenced.contains(&epoch),
            "leads again at an epoch a fenced write ended"
        );
        trace.led.push((now, epoch));
    }
}

fn simulate(ops: &[Op]) -> Trace {
    let t0 = Instant::now();
    let mut now = t0;
    let mut world = World::new(now);
    let mut e = Election::new("n1", "http://n1", timing(), now);
    let mut trace = Trace::default();
    for op in ops {
        match op {
            Op::Advance(by) => {
                let until = now + ms(*by);
                // Every wake-up on the way, in order.
                while let Some(wake) = e.wake_at().filter(|w| *w <= until) {
                    now = wake.max(now);
                    run(&mut e, &mut world, &mut trace, Event::Tick, now);
                }
                now = until;
                // The handlers read the view between steps, with the clock moving on.
                check_leadership(&e, &world, &mut trace, now);
            }
            Op::Stall(by) => {
                now += ms(*by);
                check_leadership(&e, &world, &mut trace, now);
            }
            Op::Outage => world.down = true,
            Op::Recover => world.down = false,
            Op::Steal => {
                if world.holder.is_none() || world.expires_at <= now {
                    assert_eq!(
                        e.snapshot().leader_epoch(now),
                        None,
                        "the store gave a leader's lease away"
                    );
                    world.grant("n2", None, now);
                }
            }
            Op::Rewrite => {
                world.highest_epoch += 100;
                world.epoch = world.highest_epoch;
                world.holder = Some("rogue".into());
                world.holder_session = None;
                world.expires_at = now + TTL;
            }
            Op::KillSession => {
                if world.session.take().is_some() {
                    if world.holder.as_deref() == Some("n1") {
                        world.holder_session = None;
                        world.expires_at = world.expires_at.min(now); // the row names a dead session: free
                    }
                    run(&mut e, &mut world, &mut trace, Event::Lost(Loss::SessionEnded), now);
                }
            }
            Op::Write => {
                if let Some(epoch) = e.snapshot().leader_epoch(now) {
                    if !world.fence_holds(epoch, now) {
                        trace.fenced.push(epoch);
                        run(&mut e, &mut world, &mut trace, Event::FencedWrite { epoch }, now);
                        assert_eq!(
                            e.snapshot().leader_epoch(now),
                            None,
                            "a fenced write did not end leadership"
                        );
                    }
                }
            }
            Op::Shutdown => run(&mut e, &mut world, &mut trace, Event::Shutdown, now),
        }
    }
    trace
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn the_election_keeps_its_invariants_under_random_faults(ops in proptest::collection::vec(op(), 1..80)) {
        let trace = simulate(&ops);

        // An epoch is never reused: acquisitions strictly increase.
        let acquired: Vec<i64> = trace.audits.iter().filter_map(|r| match r {
            Record::Acquired { epoch } => Some(*epoch),
            _ => None,
        }).collect();
        prop_assert!(acquired.windows(2).all(|w| w[0] < w[1]), "epochs reused: {acquired:?}");

        // A split brain is audited exactly once per term it ends.
        let mut diverged: Vec<i64> = trace.audits.iter().filter_map(|r| match r {
            Record::SplitBrain(d) => Some(d.local_epoch),
            _ => None,
        }).collect();
        let count = diverged.len();
        diverged.dedup();
        prop_assert_eq!(count, diverged.len(), "a split brain audited twice");

        // The audit order: lost, then restored, then acquired; never acquired while lost.
        let mut lost = false;
        for record in &trace.audits {
            match record {
                Record::QuorumLost { .. } => { prop_assert!(!lost, "lost twice in one outage"); lost = true; }
                Record::QuorumRestored { .. } => { prop_assert!(lost, "restored without a loss"); lost = false; }
                Record::Acquired { .. } => prop_assert!(!lost, "acquired before the restore was recorded"),
                _ => {}
            }
        }

        // Every term that started ends in the trail exactly once (or is still running).
        let mut open: Option<i64> = None;
        for record in &trace.audits {
            match record {
                Record::Acquired { epoch } => { prop_assert_eq!(open, None, "a term began before the last ended"); open = Some(*epoch); }
                Record::SteppedDown { epoch, .. } | Record::Released { epoch } => {
                    prop_assert_eq!(open, Some(*epoch), "the end of a term not begun");
                    open = None;
                }
                _ => {}
            }
        }
    }
}
