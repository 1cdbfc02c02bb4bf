//! Cluster plans for lct: what a cluster is made of, checked before anything is made.
//!
//! * [`plan`]: the format (parameters, groups, services, firewall flows, names,
//!   dependencies, offered values, hooks per event).
//! * [`offered`]: what a cluster opens to its dependents, and the check that a dependent
//!   asks for nothing else.
//! * [`load`]: plan references (`package:NAME`, a path), reading with errors that name file,
//!   line, column and field, the checks, and parameter values from `--set`.
//!
//! * [`cluster`]: clusters made from plans and their operations (create, scale, start,
//!   stop, reconcile, diff, destroy), all converging; the state kept per cluster.
//! * [`hooks`]: events and their hooks (built-in actions, scripts, playbooks), what hooks
//!   are given, the event log.

pub mod cluster;
pub mod hooks;
pub mod load;
pub mod offered;
pub mod plan;

pub use load::{Loaded, PACKAGES, Package, PlanError, PlanRef, parameters, parse, validate};
pub use plan::Plan;
