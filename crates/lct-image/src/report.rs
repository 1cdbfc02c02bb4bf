//! What lct-image says it did, as records: `image-created`, `image-restored` and
//! `image-verified` (one shape, three kinds), and `image-progress` (how far long work got,
//! where no terminal shows a bar).

use std::marker::PhantomData;
use std::path::Path;

use lct_core::record::Record;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::format::{Index, Kind, hex};

/// The kind of a [`Report`]: [`Created`], [`Restored`] or [`Verified`].
pub trait Done {}

/// An image was made (`image-created`).
#[derive(Debug, Clone, Copy, JsonSchema)]
pub struct Created;
/// An image was written onto a target (`image-restored`).
#[derive(Debug, Clone, Copy, JsonSchema)]
pub struct Restored;
/// An image, or a target's copy of one, was checked (`image-verified`).
#[derive(Debug, Clone, Copy, JsonSchema)]
pub struct Verified;

impl Done for Created {}
impl Done for Restored {}
impl Done for Verified {}

/// What a create, restore or verify did: the image, its target, and what the image holds.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(bound = "")]
pub struct Report<K: Done> {
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    pub size: u64,
    pub extents: usize,
    pub data_extents: usize,
    pub zero_extents: usize,
    /// Extents `--skip-matching` found right on the target.
    pub skipped: usize,
    pub image_bytes: u64,
    /// The BLAKE3 root hash of the index, in hex.
    pub root: String,
    #[serde(skip)]
    #[schemars(skip)]
    done: PhantomData<K>,
}

impl Record for Report<Created> {
    const KIND: &'static str = "image-created";
    const VERSION: u32 = 1;
}

impl Record for Report<Restored> {
    const KIND: &'static str = "image-restored";
    const VERSION: u32 = 1;
}

impl Record for Report<Verified> {
    const KIND: &'static str = "image-verified";
    const VERSION: u32 = 1;
}

impl<K: Done> Report<K> {
    /// The report on `image` (restored onto or checked against `target`) of `index`.
    pub(crate) fn of(image: &Path, target: Option<&Path>, index: &Index, skipped: usize) -> Report<K> {
        let data = index.extents.iter().filter(|e| e.kind == Kind::Data).count();
        Report {
            image: image.display().to_string(),
            target: target.map(|t| t.display().to_string()),
            size: index.manifest.size,
            extents: index.extents.len(),
            data_extents: data,
            zero_extents: index.extents.len() - data,
            skipped,
            image_bytes: index.extents.iter().map(|e| u64::from(e.csize)).sum(),
            root: hex(&index.root),
            done: PhantomData,
        }
    }

    /// The line a terminal shows.
    pub fn summary(&self) -> String {
        let ratio = self.image_bytes as f64 / self.size.max(1) as f64;
        format!(
            "{}: {} bytes in {} extents ({} data, {} zero{}), image {} bytes ({:.1}%), root {}",
            self.target.as_deref().unwrap_or(&self.image),
            self.size,
            self.extents,
            self.data_extents,
            self.zero_extents,
            if self.skipped > 0 { format!(", {} already there", self.skipped) } else { String::new() },
            self.image_bytes,
            ratio * 100.0,
            &self.root[..16]
        )
    }
}

/// How far long work got (`image-progress`): printed on stderr where no terminal shows a
/// bar, so that a log shows how far a long create got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Progress {
    /// `imaging`, `restoring`, `verifying`, `adding`, `exporting`.
    pub step: String,
    /// Bytes of the disk done.
    pub done: u64,
    /// The disk's bytes; 0 while unknown (a stream).
    pub total: u64,
}

impl Record for Progress {
    const KIND: &'static str = "image-progress";
    const VERSION: u32 = 1;
}
