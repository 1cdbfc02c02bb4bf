//! Authoritative DNS for lct clusters.
//!
//! * [`zone`]: zones from the inventory: a name per node and per group, SRV records for the
//!   services a cluster declares, reverse (PTR) zones for private addresses, SOA and NS;
//!   every record marked for the internal view, the external view, or both. As
//!   `dns-record` records or as RFC 1035 master files that BIND and Knot load as they are.
//!
//! * [`server`]: hickory's catalogs, one per view, and the choice of view by client address.
//! * [`fast`]: precomputed answers: every ordinary query, positive or negative.
//! * [`rrl`]: response rate limiting over UDP.
//! * [`keyed`]: hashing keyed per process (rate-limit tags, the answer tables).
//! * [`notify`]: NOTIFY to secondaries when a zone changes.
//! * [`secondary`]: zones followed from a primary (refresh, NOTIFY, IXFR, expiry).
//! * [`net`]: the UDP and TCP sockets.
//! * [`service`]: configuration, what is served and its atomic swap, systemd's protocol.
//! * Server side: [`signed`] authenticates UPDATE and transfer requests (TSIG) and answers
//!   them through [`update`] (RFC 2136) and [`transfer`] (AXFR, IXFR from the journal, one
//!   view per secondary's key).
//! * Client side: [`client`] transfers a zone and sends the difference as UPDATEs.
//! * [`linode`]: the external view into Linode's DNS Manager (`lct-dns sync-linode`).
//! * [`wire`]: `dns-record` records to and from the wire.
//! * [`tsig`]: TSIG keys.
//! * `fuzzing` (hidden): the readers of untrusted messages, for lct-fuzz.

pub mod client;
pub mod fast;
#[doc(hidden)]
pub mod fuzzing;
pub mod keyed;
#[cfg(feature = "linode")]
pub mod linode;
pub mod net;
pub mod notify;
pub mod rrl;
pub mod secondary;
pub mod server;
pub mod service;
pub mod signed;
pub mod transfer;
pub mod tsig;
pub mod update;
pub mod wire;
pub mod zone;

pub use zone::{DnsRecord, RecordType, View, ZoneOptions, master_file, zone_records};
