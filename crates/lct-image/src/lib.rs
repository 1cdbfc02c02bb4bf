//! Disk images for lct: made from a disk or volume, stored, verified and streamed back onto
//! disks and block volumes.
//!
//! From the bottom up (a module uses only those above it in this list):
//!
//! * [`format`]: the image format (zstd frames per extent, lct's index, zstd's seek table).
//! * [`disk`]: files and block devices (size, mounts, holes, zeroing a range, `OUT.partial`).
//! * [`foreign`]: what a qcow2, VMDK, VHDX or VDI says about other files (refused).
//! * `confine`: qemu-img confined by Landlock to the image it converts and its output.
//! * [`checkpoint`]: what a create that stopped has durably written, to go on from there.
//! * [`error`]: the crate's one error type.
//! * [`parallel`]: work on every core, in order, with bounded memory.
//! * [`frame`]: one extent's frame (zeros, the check of a frame against its hash), and
//!   [`frame::ReadFrames`], what any opened image offers its readers.
//! * [`report`]: the `image-created`, `image-restored`, `image-verified` and
//!   `image-progress` records.
//! * [`remote`]: images by URL (HTTP Range, resumed at frame boundaries).
//! * [`repo`]: a repository of many images, each extent stored once (`image-entry`,
//!   `image-added`, `image-pruned`).
//! * [`node_pipe`]: a program on a node over lct's SSH, its answer bounded and timed.
//! * [`node_repo`]: repositories on nodes (`ssh://NODE/PATH`), lct-image run there.
//! * [`opened`]: an image opened however it is named (file, `REPO::NAME`,
//!   `ssh://NODE/PATH::NAME`, URL, a pipe), and `send`.
//! * [`repo_remote`]: images up to and down from repositories on nodes.
//! * [`create`]: a raw disk into an image (every core, bounded memory, resumable).
//! * [`source`]: `create` of anything else (qcow2 and friends, .gz/.xz/.zst, by URL).
//! * [`restore`]: `restore` and `verify`.
//! * [`volume`]: images onto and from the block volumes of nodes, on every provider.
//! * [`repo_relay`]: a restore from a repository on one node onto another node's volume,
//!   node to node.
//! * [`node`]: images onto a node's block device (`node:NAME:/dev/DEVICE`).
//! * [`linode`]: an image as a Linode Image (`push-linode`).
//! * [`any`]: what the subcommands do, whatever names their image and target.
//! * [`progress`]: a bar on a terminal, `image-progress` lines elsewhere ([`progress::Bar`]).
//! * [`cli`]: the command line.

pub mod any;
pub mod checkpoint;
pub mod cli;
mod confine;
pub mod create;
pub mod disk;
pub mod error;
pub mod foreign;
pub mod format;
pub mod frame;
pub mod linode;
pub mod node;
pub mod node_pipe;
pub mod node_repo;
pub mod opened;
pub mod parallel;
pub mod progress;
pub mod remote;
pub mod repo;
pub mod repo_relay;
pub mod repo_remote;
pub mod report;
pub mod restore;
pub mod source;
pub mod volume;

pub use create::CreateOptions;
pub use error::ImageError;
pub use opened::{Opened, index};
pub use report::Report;
pub use restore::{RestoreOptions, restore, verify};
pub use source::create;
