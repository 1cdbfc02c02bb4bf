//! Cloud providers behind one interface.
//!
//! [`Provider`] is what every other tool programs against: list, create, start, stop and
//! delete nodes, and manage block volumes. [`local::LocalCloud`] implements it with Linux
//! network namespaces on this machine; [`linode::LinodeProvider`] implements the same trait
//! with the Linode API v4.
//! [`AnyProvider`] picks one at run time.

pub mod linode;
pub mod local;
mod provider;

pub use provider::{AnyProvider, Provider, ProviderError, VolumeSpec};
