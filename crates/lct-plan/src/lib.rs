//! Cluster plans for lct: what a cluster is made of, checked before anything is made.
//!
//! Plans, read and checked:
//!
//! * [`plan`]: the format (parameters, groups, services, firewall flows, names,
//!   dependencies, offered values, hooks per event).
//! * [`packages`]: the plans built into lct.
//! * [`load`]: plan references (`package:NAME`, a path, a URL) and reading them, with
//!   errors ([`error`]) that name file, line, column and field.
//! * [`validate`]: the checks a plan passes before use, and parameter values from `--set`.
//! * [`offered`]: what a cluster opens to its dependents, and the check that a dependent
//!   asks for nothing else.
//! * [`check`]: what a plan may hand to a command line (grammars checked at `validate`).
//! * [`placement`]: groups that span regions (`regions`, `per_region`): names checked,
//!   each node's region by its index.
//! * [`template`]: templates rendered within a budget of steps and output.
//! * [`locate`]: where a field is in a plan's text, for errors found after parsing.
//! * [`setting`]: parameter values from `--set` and `--set-file` (secrets kept out of `ps`).
//! * [`records`]: the records lct-plan prints (`plan-event`, `plan-secrets`, `plan-reconciled`).
//! * [`suggest`]: "did you mean" for names that are close to a known one.
//!
//! Clusters made from plans:
//!
//! * [`state`]: what lct keeps per cluster, and the cluster loaded once for an operation
//!   (the [`state::Context`] events, hooks and actions are given).
//! * [`spec`]: what a plan asks for and gives, rendered for one cluster: nodes, the cluster
//!   record, volumes, offered values.
//! * [`cluster`]: the operations (create, scale, start, stop, reconcile, destroy), all
//!   converging; [`diff`]: what one would do, changing nothing.
//! * [`hooks`]: events and their hooks, the event log; [`actions`]: the built-in actions;
//!   [`script`]: scripts and playbooks, and what they are given.
//! * [`report`]: what `lct-plan` shows: the packaged plans, a plan, a cluster's status and
//!   its events.
//! * [`graph`]: clusters and plans as a picture (DOT, SVG through Graphviz).
//!
//! Golden images:
//!
//! * [`recipe`]: what goes into a baked image, hashed, and the entry's name.
//! * [`generalize`]: the bake node's disk made anyone's (and checked for secrets).
//! * [`bake`]: `lct-plan bake`, the image-time work on one node into a repository entry.
//! * [`images`]: groups' images (`baked`, `REPO::NAME`, files, URLs) resolved and prepared
//!   before any node is made; where bakes are kept.
//! * [`cli`]: the command line's definitions (the binary parses with them and prints).

pub mod actions;
pub mod bake;
pub mod check;
pub mod cli;
pub mod cluster;
pub mod diff;
pub mod error;
pub mod generalize;
pub mod graph;
pub mod hooks;
pub mod images;
pub mod labhome;
pub mod load;
pub mod locate;
pub mod offered;
pub mod packages;
pub mod placement;
pub mod plan;
pub mod recipe;
pub mod records;
pub mod report;
pub mod script;
pub mod setting;
pub mod spec;
pub mod state;
pub mod suggest;
pub mod template;
pub mod validate;
pub mod watch;

pub use error::PlanError;
pub use load::{Loaded, PlanRef, parse};
pub use packages::{PACKAGES, Package};
pub use plan::Plan;
pub use validate::{parameters, validate};
