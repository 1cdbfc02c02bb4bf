//! What makes a type a record: its `kind` and schema version ([`Record`]), and the one list
//! of every kind lct's tools print or read ([`KINDS`]). A record whose kind is not on the
//! list cannot be written (its writing does not compile), and `schemas/records.schema.json`
//! is checked against the list: a new kind cannot be printed without a schema.

use schemars::JsonSchema;
use serde::Serialize;

/// A record kind that can travel in the stream.
pub trait Record: Serialize + serde::de::DeserializeOwned + JsonSchema {
    /// The value of the `kind` field.
    const KIND: &'static str;
    /// The newest schema version of this kind this build reads and writes.
    const VERSION: u32;

    /// Drops the envelope fields (`kind`, `v`) where a record keeps unknown fields.
    fn strip_envelope(&mut self) {}

    /// Evaluated wherever a record is written (lct-core's stream): a kind missing from
    /// [`KINDS`] is a compile error there, not a line no schema describes.
    #[doc(hidden)]
    const LISTED: () = assert!(listed(Self::KIND), "a Record's KIND must be listed in lct_core::record::KINDS");
}

/// Every kind of record lct's tools print or read, by the crate whose type it is (the table
/// of docs/records.md). `linode-RESOURCE` lines (`lct-api linode`) are not records: they
/// are Linode's own JSON with a kind added, and pass through the other tools.
pub const KINDS: &[&str] = &[
    // lct-core
    "node",
    "cluster",
    "node-spec",
    "volume",
    // lct-api
    "lab",
    "region",
    // lct-inventory
    "exec-result",
    // lct-hosts
    "host-entry",
    "hosts-apply",
    "hosts-push",
    // lct-dns
    "dns-record",
    "dns-update",
    "dns-linode-change",
    "dns-stat",
    "dns-key",
    "dns-ds",
    // lct-fw
    "fw-ruleset",
    "fw-sync",
    "fw-cloud-sync",
    // lct-image
    "image-created",
    "image-restored",
    "image-verified",
    "image-progress",
    "image-entry",
    "image-added",
    "image-pruned",
    // lct-plan
    "plan-event",
    "plan-secrets",
    "plan-reconciled",
    "plan-baked",
    "plan-bake-step",
    // lct-mesh
    "mesh-node",
    "mesh-peer",
    "mesh-config",
    "mesh-apply",
];

/// Whether `kind` is in [`KINDS`] (a `const fn`: checked as records are compiled).
pub const fn listed(kind: &str) -> bool {
    let mut i = 0;
    while i < KINDS.len() {
        if same(KINDS[i].as_bytes(), kind.as_bytes()) {
            return true;
        }
        i += 1;
    }
    false
}

const fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_listed_once() {
        assert!(listed("node") && listed("plan-reconciled") && !listed("nod") && !listed("linode-image"));
        let mut seen = std::collections::BTreeSet::new();
        for kind in KINDS {
            assert!(seen.insert(kind), "{kind} is listed twice");
        }
    }
}
