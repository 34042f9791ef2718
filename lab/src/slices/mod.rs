//! The validation slices (docs/VALIDATION.md), each a `harness::Slice`: its phases against a
//! real lab, the observations they record, and its ten checks judged from them alone.

pub mod val13;
pub mod val14;
pub mod val15;
pub mod val16;
pub mod val17;
pub mod val19;

pub use val13::Val13;
pub use val14::Val14;
pub use val15::Val15;
pub use val16::Val16;
pub use val17::Val17;
pub use val19::Val19;
