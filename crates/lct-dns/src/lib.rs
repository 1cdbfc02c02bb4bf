//! Authoritative DNS for lct clusters. The modules in layers, each using only those above it
//! in this list (no two files use each other, directly or around a loop):
//!
//! Records and names
//! * [`zone`]: zones from the inventory: a name per node and per group, SRV records for the
//!   services a cluster declares, reverse (PTR) zones for private addresses, SOA and NS;
//!   every record marked for the internal view, the external view, or both. As
//!   `dns-record` records or as RFC 1035 master files that BIND and Knot load as they are.
//! * [`keyed`]: hashing keyed per process (rate-limit tags, the answer tables).
//! * [`tsig`]: TSIG keys.
//! * [`mode`]: zone modes (split, private, public): who a zone answers.
//! * [`wire`]: `dns-record` records to and from the wire; names in wire form.
//! * [`zonekeys`]: a DNSSEC key: its DNSKEY, signatures and DS.
//! * [`keystate`]: a signed zone's keys with roles and timestamps, on disk.
//! * [`keyroll`]: the key policy and rollovers (ZSK pre-publication, KSK double signature).
//! * [`dsquery`]: asking the parent's servers whether a new DS is there.
//!
//! Answering
//! * [`fast`]: the answer tables and the hot path: every ordinary query, positive or
//!   negative, answered from them.
//! * [`denial`]: a signed zone's signatures beside their sets, and its NSEC chain for
//!   negative answers with the DO bit.
//! * [`referral`]: names at or below a delegation answered with a referral (and the DS
//!   proof with the DO bit).
//! * [`tables`]: building those tables from records, or a record at a time off a transfer.
//! * [`sign`]: signing the zones served here when a version is built, signatures kept
//!   between versions.
//! * [`keyevents`]: the signed zones' key events: rollover steps, the parent's DS.
//! * [`rrl`]: response rate limiting over UDP.
//! * [`journal`]: the recent changes of each zone, for IXFR.
//! * [`stats`]: the counters (queries by view, type and rcode; RRL; TCP; transfers;
//!   NOTIFY), per thread on the answer path, summed when read.
//!
//! Client side
//! * [`chain`]: the TSIG chain of an answer in several messages, checked.
//! * [`client`]: transfers a zone and sends the difference as UPDATEs (`lct-dns update`).
//! * [`linode`]: the external view into Linode's DNS Manager (`lct-dns sync-linode`).
//!
//! What a server serves
//! * [`regions`]: views keyed by the asker's region (by its mesh address): another region's
//!   zones, chosen in one table lookup.
//! * [`settings`]: what a running server needs besides its zones (prefixes, modes, keys and
//!   what each may do).
//! * [`served`]: the records, their answer tables and the settings, kept in the state
//!   directory.
//! * [`notify`]: NOTIFY to secondaries when a zone changes.
//! * [`live`]: what is served now, swapped whole on a change; the journal beside it.
//! * [`metrics`]: the counters and the zones' gauges as named metrics (`dns-stat` records,
//!   Prometheus' text format).
//! * [`scrape`]: the statistics listener (HTTP: /metrics, /stats) and its client.
//! * [`config`]: the configuration file, and what is served made of it.
//! * [`resign`]: signatures made again before they expire (a new serial).
//!
//! Requests beyond the tables
//! * [`request`]: a request authenticated with TSIG (what its key may do), its zone, the
//!   signed responses to it.
//! * [`transfer`]: AXFR, and IXFR from the journal, one view per secondary's key.
//! * [`update`]: dynamic updates (RFC 2136).
//! * [`signed`]: the entry for signed requests: UPDATE, transfers, NOTIFY, signed queries.
//! * [`dispatch`]: the answer to any message the UDP fast path did not take.
//!
//! The running server
//! * [`udp`] and [`tcp`]: the sockets and their loops.
//! * [`secondary`]: zones followed from a primary (refresh, NOTIFY, IXFR, expiry).
//! * [`systemd`]: systemd's readiness protocol.
//! * [`service`]: `lct-dns serve`: sockets bound, loops started, SIGHUP reloads.
//!
//! * `fuzzing` (hidden): the readers of untrusted messages, for lct-fuzz.

pub mod chain;
pub mod client;
pub mod config;
pub mod denial;
pub mod dispatch;
pub mod dsquery;
pub mod fast;
#[doc(hidden)]
pub mod fuzzing;
pub mod journal;
pub mod keyed;
pub mod keyevents;
pub mod keyroll;
pub mod keyserial;
pub mod keystate;
#[cfg(feature = "linode")]
pub mod linode;
pub mod live;
pub mod metrics;
pub mod mode;
pub mod notify;
pub mod patch;
pub mod reaper;
#[cfg(test)]
mod reference;
pub mod referral;
pub mod regions;
pub mod request;
pub mod resign;
pub mod rrl;
pub mod scrape;
pub mod secondary;
pub mod served;
pub mod service;
pub mod settings;
pub mod sign;
pub mod signed;
pub mod stats;
pub mod systemd;
pub mod tables;
pub mod tcp;
pub mod transfer;
pub mod tsig;
pub mod udp;
pub mod update;
pub mod updatelog;
pub mod validate;
pub mod wire;
pub mod zone;
pub mod zonekeys;

pub use zone::{DnsRecord, RecordType, View, ZoneOptions, master_file, zone_records};
