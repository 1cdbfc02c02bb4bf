//! Cloud providers behind one interface.
//!
//! [`Provider`] is what every other tool programs against: list, create, start, stop and
//! delete nodes, and manage block volumes. [`local::LocalCloud`] implements it with Linux
//! network namespaces on this machine; [`linode::LinodeProvider`] implements the same trait
//! with the Linode API v4.
//! [`AnyProvider`] picks one at run time; [`providers_to_ask`] is the rule for which, and
//! [`remember_provider`] keeps cluster records pointing at it. [`act`] starts, stops and
//! deletes nodes each on the provider that holds it. [`create::create_many`] makes many
//! nodes the way their provider wants; [`reach`] says where a node's volume is read and
//! written. The tools above ask these; none of them looks at which provider it is.

pub mod act;
mod any;
pub mod cli;
pub mod cloudinit;
pub mod create;
pub mod disk_image;
#[cfg(feature = "linode")]
pub mod linode;
pub mod local;
mod provider;
pub mod ranges;
pub mod reach;

pub use any::{AnyProvider, PROVIDERS_HELP, has_regions, provider_image, providers_to_ask, remember_provider};
pub use disk_image::{DiskCapture, LctImage};
pub use provider::{CreateOrder, Provider, ProviderError, VolumeSpec, parse_size_mib};
