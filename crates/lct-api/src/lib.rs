//! Cloud providers behind one interface.
//!
//! [`Provider`] is what every other tool programs against: list, create, start, stop and
//! delete nodes, and manage block volumes. [`local::LocalCloud`] implements it with Linux
//! network namespaces on this machine; the Linode API v4 provider implements the same trait.
//! [`AnyProvider`] picks one at run time.

pub mod local;
mod provider;

pub use provider::{AnyProvider, Provider, ProviderError, VolumeSpec};
