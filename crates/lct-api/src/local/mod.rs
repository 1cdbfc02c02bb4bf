//! The local cloud: nodes are Linux network namespaces on this machine.
//!
//! Layout of a lab named `L` (`LCT_LAB`, default `lct`):
//!
//! ```text
//!   namespace L-lab:      br-priv (private network)      br-pub (public network)
//!                         bp-REGION (one per region)
//!                           |  p<id> veths                 |  u<id> veths, out
//!   namespace L-<node>:   eth0 192.168.128.x/17          eth1 203.0.113.x/24, 2001:db8::x/64
//!   namespace L-outside:                                 eth0 203.0.113.254/24, 2001:db8::fffe/64
//! ```
//!
//! Each region (`--region`, default `local`) is a private bridge of its own (`br-priv` for
//! `local`, `bp-REGION` for the others): every region hands out the same private range, so
//! two regions' private addresses overlap and never reach each other, while every node's
//! public side is on the one public bridge, which the outside namespace joins ([`region`]).
//! The bridges carry no address, so the lab is reachable from nowhere but its own
//! namespaces: the root namespace gets no address and no route to either network.
//! Volumes are sparse files attached as loop devices.
//!
//! A node is a namespace over this machine's file system (`lct/netns`, the default), or a
//! Debian machine in that namespace (`debian-12`): see [`machine`].
//!
//! State lives in `STATE_DIR/local/cloud.json`. Every change is written there *before* it
//! is made (a node is `provisioning` until its namespace is complete, `deleting` until it is
//! gone), so a run that dies half-way leaves a record of what to finish; the next change
//! repairs it, and `lct-api lab repair` repairs everything.
//!
//! The rooms: `state` (the state file and the lab's lock), `lab` (namespaces, bridges,
//! veths, addresses on links), `region` (region names, their bridges), `address` (allocation), `volumes` (loop devices),
//! `nodes` (create, power, wait for SSH), `boot_window` (how many machines boot at once), `repair` (finishing what a dead run left,
//! `lab down`), `machine` and `images` (machine nodes, their base root and mirror),
//! `golden` (machines from lct images), `native_boot` (their first boot without cloud-init), `generators` (systemd's generators masked in a container), `confined` (writing into an image's tree safely),
//! `capture` (a stopped machine's root as a disk, for bake),
//! `reboot` (a machine's supervisor), `cgroups` (a machine's own cgroups), `net` (iproute2 and util-linux), and `cloud`:
//! the [`Provider`](crate::Provider) impl, whose every operation runs on tokio's blocking
//! threads (the lock, `ip`, `losetup` and systemd-nspawn block).

mod address;
mod boot_window;
mod capture;
mod cgroups;
mod cloud;
mod confined;
mod generators;
mod golden;
mod images;
mod lab;
mod machine;
mod native_boot;
mod net;
mod nodes;
pub mod reboot;
mod region;
mod repair;
mod state;
mod volumes;

pub use generators::{CONTAINER_GENERATOR_MASKS, GENERATORS_DIR};

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::ProviderError;
pub use golden::{Golden, host_arch};
pub use images::{BASE_PACKAGES, Images};
pub use lab::{OUTSIDE_IPV4, OUTSIDE_IPV6, PUBLIC_IPV4_RANGES};
pub use machine::{NodeImage, volume_path_in_machine};
pub use region::{MAX_REGION_LEN, PRIVATE_RANGE, REGION, RegionInfo, check_region};

/// The local cloud of one state directory.
#[derive(Debug, Clone)]
pub struct LocalCloud {
    dir: PathBuf,
    lab: Option<String>,
    /// Machines this process saw ready and has not recorded as running yet: recorded
    /// together by whichever waiter takes the lab's lock next (one save for many, not one
    /// lock and one synced write per machine while a hundred become ready at once).
    ready: std::sync::Arc<std::sync::Mutex<Vec<lct_core::record::Name>>>,
}

impl LocalCloud {
    /// The state directory from `LCT_STATE_DIR` and the lab name from `LCT_LAB`.
    pub fn from_env() -> Self {
        let lab = std::env::var("LCT_LAB").ok().filter(|l| !l.is_empty());
        LocalCloud::new(&lct_core::state::state_dir(), lab)
    }

    pub fn new(state_dir: &Path, lab: Option<String>) -> Self {
        LocalCloud { dir: state_dir.join("local"), lab, ready: Default::default() }
    }

    /// Whether this state directory holds a local cloud (it has created something).
    pub fn has_state(&self) -> bool {
        self.state_path().exists()
    }

    fn state_path(&self) -> PathBuf {
        self.dir.join("cloud.json")
    }

    /// The state directory (`STATE/local`'s parent).
    fn state_dir(&self) -> &Path {
        self.dir.parent().unwrap_or(Path::new("."))
    }

    /// The images and mirror this cloud's machines use.
    pub fn images(&self) -> Images {
        Images::new(&self.dir)
    }

    /// Runs `work` on tokio's blocking threads: the lab's lock, `ip`, `losetup` and
    /// systemd-nspawn block, and an async caller's other tasks must go on meanwhile.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&LocalCloud) -> Result<T, ProviderError> + Send + 'static,
    ) -> Result<T, ProviderError> {
        let cloud = self.clone();
        tokio::task::spawn_blocking(move || work(&cloud)).await.map_err(|e| ProviderError::Io {
            what: "the local cloud's worker thread".into(),
            error: std::io::Error::other(e),
        })?
    }
}

/// What `lct-api lab status` shows: the `lab` record.
#[derive(Debug, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct LabStatus {
    pub lab: String,
    pub lab_namespace: String,
    pub lab_namespace_exists: bool,
    pub outside_namespace: String,
    pub outside_namespace_exists: bool,
    pub outside_ipv4: Ipv4Addr,
    pub outside_ipv6: Ipv6Addr,
    pub nodes: usize,
    pub volumes: usize,
}

impl lct_core::record::Record for LabStatus {
    const KIND: &'static str = "lab";
    const VERSION: u32 = 1;
}

/// What a machine's cloud-init seed is.
#[derive(Debug, Clone, Copy)]
pub enum Seed<'a> {
    /// lct's cloud-config, with the user's user-data (if any) merged in.
    Merged(Option<&'a str>),
    /// This whole document, as given.
    Raw(&'a str),
}
