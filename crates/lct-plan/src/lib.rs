//! Cluster plans for lct: operations, events, hooks and dependencies.
//!
//! Cluster plans are built in their own issue; this build has the command skeleton only.
