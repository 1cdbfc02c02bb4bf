//! Cluster plans for lct: what a cluster is made of, checked before anything is made.
//!
//! * [`plan`]: the format (parameters, groups, services, firewall flows, names,
//!   dependencies, offered values, hooks per event).
//! * [`offered`]: what a cluster opens to its dependents, and the check that a dependent
//!   asks for nothing else.
//! * [`load`]: plan references (`package:NAME`, a path), reading with errors that name file,
//!   line, column and field, the checks, and parameter values from `--set`.
//! * [`check`]: what a plan may hand to a command line (grammars checked at `validate`).
//! * [`template`]: templates rendered within a budget of steps and output.
//! * [`locate`]: where a field is in a plan's text, for errors found after parsing.
//! * [`setting`]: parameter values from `--set` and `--set-file` (secrets kept out of `ps`).
//!
//! * [`cluster`]: clusters made from plans and their operations (create, scale, start,
//!   stop, reconcile, diff, destroy), all converging; the state kept per cluster.
//! * [`hooks`]: events and their hooks (built-in actions, scripts, playbooks), what hooks
//!   are given, the event log.

pub mod check;
pub mod error;
pub mod cluster;
pub mod hooks;
pub mod load;
pub mod locate;
pub mod offered;
pub mod packages;
pub mod plan;
pub mod setting;
pub mod template;
pub mod validate;

pub use error::PlanError;
pub use load::{Loaded, PlanRef, parse};
pub use packages::{PACKAGES, Package};
pub use validate::{parameters, validate};
pub use plan::Plan;
