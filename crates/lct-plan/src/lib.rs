//! Cluster plans for lct: what a cluster is made of, checked before anything is made.
//!
//! * [`plan`]: the format (parameters, groups, services, firewall flows, names,
//!   dependencies, offered values, hooks per event).
//! * [`load`]: plan references (`package:NAME`, a path), reading with errors that name file,
//!   line, column and field, the checks, and parameter values from `--set`.
//!
//! Operations (create, scale, start, stop, destroy, reconcile), events and hooks build on
//! these in the next steps.

pub mod load;
pub mod plan;

pub use load::{PACKAGES, PlanError, PlanRef, parameters, parse, validate};
pub use plan::Plan;
