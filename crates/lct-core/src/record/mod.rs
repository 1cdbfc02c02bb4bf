//! The records that flow between the lct tools as JSON lines.
//!
//! Every line is one JSON object with a `kind` and a schema version `v`. The types here
//! are the single definition of the node, cluster, node-spec and volume records; other
//! crates define their own kinds (host entries, firewall rules, DNS records, image reports)
//! by implementing [`Record`], each kind on the one list [`KINDS`].
//! `schemas/records.schema.json` describes the same shapes for other languages.
//!
//! * [`kind`]: the [`Record`] trait and the list of kinds.
//! * [`names`]: host-name labels and domain names, checked where they are made.
//! * [`port`]: ports and port ranges with their protocol.
//! * [`node`]: the node, node-spec and volume records (providers, states, access).
//! * [`cluster`]: the cluster record (dependencies, naming policy).

pub mod cluster;
pub mod kind;
pub mod names;
pub mod node;
pub mod port;
pub mod region;

pub use cluster::{Cluster, Dependency, DnsPublish, NamePolicy};
pub use kind::{KINDS, Record};
pub use names::{DomainName, InvalidValue, Name, check_label};
pub use node::{Access, Node, NodeSpec, ProviderName, Status, Volume, VolumeAttachment, default_group};
pub use port::{PortSpec, Protocol};
pub use region::{MAX_REGION_LEN, PrivateNetwork, region_problem};
