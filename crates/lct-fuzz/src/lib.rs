//! lct's fuzz harness, on stable Rust: the readers of what lct takes from others (image
//! indexes and streams, DNS messages, plans) run on inputs mutated from small corpora kept
//! in the tree (tests/fuzz/corpus/TARGET/), and must neither panic nor take unbounded memory
//! or time on any of them.
//!
//! * [`targets`]: the readers, each a `fn(&[u8]) -> u64` (the outcome's fingerprint).
//! * [`mutate`]: a small deterministic mutator (bit flips, interesting integers, inserts,
//!   deletes, duplication, splicing).
//! * [`fixup`]: checksums made to agree again after mutation (blind mutation never gets
//!   past a BLAKE3 hash).
//! * [`memory`]: a counting global allocator: each input's peak, and a hard limit past
//!   which the input is saved before the process aborts.
//! * [`runner`]: runs a target for a number of inputs or a time, keeps inputs that reach
//!   new outcomes, saves the ones that fail.
//!
//! No coverage instrumentation (that needs nightly): new outcomes (an error of another kind,
//! an image of another shape) stand in for new coverage. cargo-fuzz could drive the same
//! target functions on nightly.

pub mod fixup;
pub mod memory;
pub mod mutate;
pub mod runner;
pub mod targets;

pub use runner::{Finding, Options, Summary, run};
pub use targets::{TARGETS, Target};
