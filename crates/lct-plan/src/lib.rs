//! Cluster plans for lct: what a cluster is made of, checked before anything is made.
//!
//! * [`plan`]: the format (parameters, groups, services, firewall flows, names,
//!   dependencies, offered values, hooks per event).
//! * [`load`]: plan references (`package:NAME`, a path), reading with errors that name file,
//!   line, column and field, the checks, and parameter values from `--set`.
//!
//! * [`cluster`]: clusters made from plans: `create` (converging), `destroy`, the built-in
//!   actions of events, the state kept per cluster.
//!
//! Scale, start, stop, reconcile, scripts and playbooks as hooks, and dependency events are
//! the next steps.

pub mod cluster;
pub mod load;
pub mod plan;

pub use load::{PACKAGES, PlanError, PlanRef, parameters, parse, validate};
pub use plan::Plan;
