//! Authoritative DNS for lct clusters.
//!
//! * [`zone`]: zones from the inventory: a name per node and per group, SRV records for the
//!   services a cluster declares, reverse (PTR) zones for private addresses, SOA and NS;
//!   every record marked for the internal view, the external view, or both. As
//!   `dns-record` records or as RFC 1035 master files that BIND and Knot load as they are.
//!
//! The server (hickory, split-horizon views, live updates) builds on these records.

pub mod fast;
pub mod server;
pub mod service;
pub mod zone;

pub use zone::{DnsRecord, RecordType, View, ZoneOptions, master_file, zone_records};
