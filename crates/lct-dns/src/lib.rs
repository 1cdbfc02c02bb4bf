//! Authoritative DNS for lct clusters.
//!
//! * [`zone`]: zones from the inventory: a name per node and per group, SRV records for the
//!   services a cluster declares, reverse (PTR) zones for private addresses, SOA and NS;
//!   every record marked for the internal view, the external view, or both. As
//!   `dns-record` records or as RFC 1035 master files that BIND and Knot load as they are.
//!
//! * [`server`]: hickory's catalogs, one per view, and the choice of view by client address.
//! * [`fast`]: precomputed answers for the common query.
//! * [`net`]: the UDP and TCP sockets.
//! * [`service`]: configuration, what is served and its atomic swap, systemd's protocol.
//! * [`update`]: RFC 2136 dynamic updates and signed transfers, server and client.
//! * [`tsig`]: TSIG keys.

pub mod fast;
pub mod net;
pub mod server;
pub mod service;
pub mod tsig;
pub mod update;
pub mod zone;

pub use zone::{DnsRecord, RecordType, View, ZoneOptions, master_file, zone_records};
