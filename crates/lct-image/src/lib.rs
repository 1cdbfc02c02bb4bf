//! Disk images for lct: made from a disk or volume, stored, verified and streamed back onto
//! disks and block volumes.
//!
//! * [`format`]: the image format (zstd frames per extent, lct's index, zstd's seek table).
//! * [`disk`]: files and block devices (size, mounts, holes, zeroing a range).
//! * [`image`]: `create`, `restore`, `verify` on every core with bounded memory.
//!
//! * [`repo`]: a repository of many images, each extent stored once.
//! * [`remote`]: images by URL (HTTP Range, resumed at frame boundaries).
//! * [`source`]: what `create` reads besides raw disks (qcow2 and friends, .gz/.xz/.zst).
//! * [`foreign`]: what a qcow2, VMDK, VHDX or VDI says about other files (refused).
//! * `confine`: qemu-img confined by Landlock to the image it converts and its output.
//!
//! Provider integration is the image issue's next step.

pub mod checkpoint;
mod confine;
pub mod disk;
pub mod foreign;
pub mod format;
pub mod image;
pub mod linode;
pub mod remote;
pub mod repo;
pub mod source;
pub mod volume;

pub use image::{CreateOptions, ImageError, Report, RestoreOptions, create, index, restore, verify};
