//! Disk images for lct: made from a disk or volume, stored, verified and streamed back onto
//! disks and block volumes.
//!
//! * [`format`]: the image format (zstd frames per extent, lct's index, zstd's seek table).
//! * [`disk`]: files and block devices (size, mounts, holes, zeroing a range).
//! * [`image`]: `create`, `restore`, `verify` on every core with bounded memory.
//!
//! * [`repo`]: a repository of many images, each extent stored once.
//!
//! Sources by URL and provider integration are the image issue's next steps.

pub mod disk;
pub mod format;
pub mod image;
pub mod repo;

pub use image::{CreateOptions, ImageError, Report, RestoreOptions, create, index, restore, verify};
