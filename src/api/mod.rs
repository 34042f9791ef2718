//! The node API's wire types: what the server answers and the client reads. Both depend on
//! this module; the client never imports the server, and the server's modules re-export what
//! they answer with from here.

mod backup;
mod error;
mod rollout;
mod schedule;
mod status;
mod verify;

pub use backup::{
    BackupRecord, BackupStatus, Difference, FileState, ProofOutcome, ProofReport, ReindexReport, RestoreReport,
    RestoreRequest, RestoreStatus,
};
pub use error::ErrorBody;
pub use rollout::{NewRollout, Rollout};
pub use schedule::{ScheduleKind, ScheduleReport, ScheduleView, SlotRecord, SlotState};
pub use status::{EndpointHealth, LeaseStoreStatus, ReplicationSample, Role, SplitBrain, StatusReport};
pub use verify::{DrillOutcome, DrillPhase, Phase, VerifyReport, VerifyRequest};
