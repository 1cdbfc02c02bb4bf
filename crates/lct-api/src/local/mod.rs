//! The local cloud: nodes are Linux network namespaces on this machine.
//!
//! Layout of a lab named `L` (`LCT_LAB`, default `lct`):
//!
//! ```text
//!   namespace L-lab:      br-priv (private network)      br-pub (public network)
//!                           |  p<id> veths                 |  u<id> veths, out
//!   namespace L-<node>:   eth0 192.168.128.x/17          eth1 203.0.113.x/24, 2001:db8::x/64
//!   namespace L-outside:                                 eth0 203.0.113.254/24, 2001:db8::fffe/64
//! ```
//!
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

mod machine;
mod net;
pub mod reboot;

use std::collections::BTreeSet;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use lct_core::fsutil::{Lock, atomic_write, atomic_write_json};
use lct_core::record::{Access, Name, Node, NodeSpec, ProviderName, Status, Volume, VolumeAttachment};
use serde::{Deserialize, Serialize};

use crate::cloudinit::{FirstBoot, RESULT_PATH, boot_result};
use crate::{Provider, ProviderError, VolumeSpec};
use machine::Machine;
pub use machine::{BASE_PACKAGES, Images, NodeImage, volume_path_in_machine};

pub const REGION: &str = "local";
/// The outside namespace's addresses: the "internet" that sees public addresses only.
pub const OUTSIDE_IPV4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 254);
pub const OUTSIDE_IPV6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xfffe);
const PRIVATE_PREFIX: u8 = 17;
const PUBLIC_RANGES: [[u8; 3]; 2] = [[203, 0, 113], [198, 51, 100]];
const PRIVATE_BRIDGE: &str = "br-priv";
/// One file per namespace, named after it, holding the name of the lab that owns it.
const MARKER_DIR: &str = "/run/lct/netns";
const PUBLIC_BRIDGE: &str = "br-pub";

/// The saved state of one lab.
#[derive(Debug, Default, Serialize, Deserialize)]
struct CloudState {
    lab: String,
    /// True once the lab and outside namespaces are complete.
    lab_ready: bool,
    next_id: u64,
    nodes: Vec<Node>,
    volumes: Vec<Volume>,
    /// The nodes that are machines (image debian-12).
    #[serde(default)]
    machines: BTreeSet<Name>,
}

/// The local cloud of one state directory.
#[derive(Debug, Clone)]
pub struct LocalCloud {
    dir: PathBuf,
    lab: Option<String>,
}

impl LocalCloud {
    /// The state directory from `LCT_STATE_DIR` and the lab name from `LCT_LAB`.
    pub fn from_env() -> Self {
        let lab = std::env::var("LCT_LAB").ok().filter(|l| !l.is_empty());
        LocalCloud::new(&lct_core::state::state_dir(), lab)
    }

    pub fn new(state_dir: &Path, lab: Option<String>) -> Self {
        LocalCloud { dir: state_dir.join("local"), lab }
    }

    /// Whether this state directory holds a local cloud (it has created something).
    pub fn has_state(&self) -> bool {
        self.state_path().exists()
    }

    fn state_path(&self) -> PathBuf {
        self.dir.join("cloud.json")
    }

    fn load(&self) -> Result<CloudState, ProviderError> {
        let path = self.state_path();
        let mut state = match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<CloudState>(&bytes)
                .map_err(|e| ProviderError::Invalid(format!("{}: corrupt local-cloud state: {e}", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => CloudState { next_id: 1, ..Default::default() },
            Err(source) => {
                return Err(ProviderError::Io { what: path.display().to_string(), error: source });
            }
        };
        let wanted = self.lab.clone().unwrap_or_else(|| "lct".to_string());
        if state.lab.is_empty() {
            // No hyphen, so "LAB-" prefixes of two labs never overlap.
            if wanted.is_empty()
                || wanted.len() > 20
                || !wanted.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            {
                return Err(ProviderError::Invalid(format!(
                    "LCT_LAB {wanted:?} must be 1 to 20 lower-case letters and digits"
                )));
            }
            state.lab = wanted;
        } else if self.lab.as_ref().is_some_and(|l| *l != state.lab) {
            return Err(ProviderError::Invalid(format!(
                "this state directory belongs to lab {:?}, not {wanted:?} (LCT_LAB)",
                state.lab
            )));
        }
        Ok(state)
    }

    fn save(&self, state: &CloudState) -> Result<(), ProviderError> {
        fs::create_dir_all(&self.dir)
            .map_err(|source| ProviderError::Io { what: self.dir.display().to_string(), error: source })?;
        atomic_write_json(&self.state_path(), state)
            .map_err(|source| ProviderError::Io { what: self.state_path().display().to_string(), error: source })
    }

    /// Takes the lab's lock, loads the state and finishes whatever a dead run left half-done.
    fn begin(&self) -> Result<(Lock, CloudState), ProviderError> {
        if !is_root() {
            return Err(ProviderError::NotRoot);
        }
        let lock_path = self.dir.join("lock");
        let lock = Lock::acquire(&lock_path)
            .map_err(|source| ProviderError::Io { what: lock_path.display().to_string(), error: source })?;
        let mut state = self.load()?;
        self.repair(&mut state, false)?;
        Ok((lock, state))
    }

    /// Brings reality in line with the state. Unfinished nodes (provisioning, deleting) are
    /// always finished; with `thorough`, every node and volume is checked step by step.
    fn repair(&self, state: &mut CloudState, thorough: bool) -> Result<(), ProviderError> {
        if state.nodes.is_empty() && state.volumes.is_empty() && !state.lab_ready && !thorough {
            return Ok(());
        }
        let lab = Lab::new(&state.lab);
        if !state.lab_ready || thorough || !net::netns_exists(&lab.lab_ns()) || !net::netns_exists(&lab.outside_ns()) {
            lab.ensure()?;
            state.lab_ready = true;
            self.save(state)?;
        }
        let names: Vec<Name> = state.nodes.iter().map(|n| n.name.clone()).collect();
        for name in names {
            let node = state.nodes.iter().find(|n| n.name == name).cloned().expect("listed");
            match node.status {
                Status::Deleting => self.finish_delete(state, &node)?,
                Status::Provisioning => {
                    tracing::info!(node = %node.name, "finishing a node a previous run left half-made");
                    lab.ensure_node(&node, true)?;
                    self.ensure_machine(state, &node, Seed::Merged(None), true)?;
                    let done = if state.machines.contains(&node.name) { Status::Booting } else { Status::Running };
                    set_status(state, &node.name, done);
                    self.save(state)?;
                }
                status => {
                    let up = matches!(status, Status::Running | Status::Booting);
                    if thorough || !net::netns_exists(&lab.node_ns(&node.name)) {
                        lab.ensure_node(&node, up)?;
                    }
                    if state.machines.contains(&node.name) && up != self.machine(state, &node).pid().is_some() {
                        tracing::info!(node = %node.name, "the machine is not as recorded: {}", if up { "booting it" } else { "stopping it" });
                        self.ensure_machine(state, &node, Seed::Merged(None), up)?;
                    }
                }
            }
        }
        if thorough {
            let mut keep: BTreeSet<String> = state.nodes.iter().map(|n| lab.node_ns(&n.name)).collect();
            keep.extend([lab.lab_ns(), lab.outside_ns()]);
            lab.sweep(&keep)?;
            for volume in state.volumes.clone() {
                match &volume.attached_to {
                    Some(_) => {
                        self.attach_loop(&volume.label)?;
                    }
                    None => self.detach_loops(&volume.label)?,
                }
            }
        }
        Ok(())
    }

    fn finish_delete(&self, state: &mut CloudState, node: &Node) -> Result<(), ProviderError> {
        let lab = Lab::new(&state.lab);
        // A deleted Linode leaves its volumes behind, detached; so does a local node.
        let attached: Vec<Name> = state
            .volumes
            .iter()
            .filter(|v| v.attached_to.as_ref() == Some(&node.name))
            .map(|v| v.label.clone())
            .collect();
        for label in attached {
            self.detach_loops(&label)?;
            let v = state.volumes.iter_mut().find(|v| v.label == label).expect("listed");
            v.attached_to = None;
            v.path = None;
        }
        if state.machines.contains(&node.name) {
            self.machine(state, node).remove()?;
            lct_core::ssh::SshFiles::new(self.state_dir())
                .forget_host(&ssh_names(node))
                .map_err(|error| ProviderError::Io { what: "lct's known_hosts".into(), error })?;
        }
        lab.remove_node(node)?;
        state.nodes.retain(|n| n.name != node.name);
        state.machines.remove(&node.name);
        self.save(state)
    }

    /// The state directory (`STATE/local`'s parent).
    fn state_dir(&self) -> &Path {
        self.dir.parent().unwrap_or(Path::new("."))
    }

    fn machine(&self, state: &CloudState, node: &Node) -> Machine {
        Machine::new(&self.dir, node, &Lab::new(&state.lab).node_ns(&node.name), &state.lab)
    }

    /// A machine node's container: booted (its first-boot files written once, with a new
    /// host key pinned in lct's known_hosts) or stopped. Nothing for namespace nodes.
    fn ensure_machine(&self, state: &CloudState, node: &Node, seed: Seed<'_>, up: bool) -> Result<(), ProviderError> {
        if !state.machines.contains(&node.name) {
            return Ok(());
        }
        let ssh = lct_core::ssh::SshFiles::new(self.state_dir());
        let io = |error| ProviderError::Io { what: "lct's SSH files".into(), error };
        let first_boot = || -> Result<FirstBoot, ProviderError> {
            let host_key = lct_core::ssh::generate_key(node.name.as_str()).map_err(io)?;
            ssh.trust_host(&ssh_names(node), &host_key.public).map_err(io)?;
            Ok(FirstBoot {
                hostname: node.name.clone(),
                host_key,
                authorized_keys: ssh.authorized_keys().map_err(io)?,
                user_data: match seed {
                    Seed::Merged(u) => u.map(String::from),
                    Seed::Raw(_) => None,
                },
                raw_user_data: match seed {
                    Seed::Raw(u) => Some(u.to_string()),
                    Seed::Merged(_) => None,
                },
            })
        };
        let machine = self.machine(state, node);
        if up && machine.pid().is_none() && machine.prepared() {
            // It booted before: like a computer that reboots, it starts with a fresh network
            // stack (no ruleset, conntrack entry or sysctl of its last boot), not the namespace
            // its last boot left behind.
            Lab::new(&state.lab).renew_node(node)?;
        }
        machine.ensure(&Images::new(&self.dir), node, first_boot, up)?;
        if up {
            for v in state.volumes.iter().filter(|v| v.attached_to.as_ref() == Some(&node.name)) {
                machine.add_volume(v.label.as_str(), &self.device_link(&v.label))?;
            }
        }
        Ok(())
    }

    /// Takes a volume's device out of the machine it is attached to, if that is a machine.
    fn remove_from_machine(&self, state: &CloudState, volume: &Volume) -> Result<(), ProviderError> {
        let node = volume.attached_to.as_ref().and_then(|n| state.nodes.iter().find(|x| &x.name == n));
        match node {
            Some(n) if state.machines.contains(&n.name) => self.machine(state, n).remove_volume(volume.label.as_str()),
            _ => Ok(()),
        }
    }

    /// Creates a node whose machine (if it is one) boots with `seed`: lct's cloud-config with
    /// the user's merged in, or a whole user-data document as given (the Linode double backs
    /// its instances this way, with the document the Linode API was sent).
    pub fn create_seeded(&self, spec: &NodeSpec, seed: Seed<'_>) -> Result<Node, ProviderError> {
        if matches!(spec.name.as_str(), "lab" | "outside") {
            return Err(ProviderError::Invalid(format!(
                "node name {:?} is reserved by the local cloud",
                spec.name.as_str()
            )));
        }
        let (_lock, mut state) = self.begin()?;
        if let Some(existing) = state.nodes.iter().find(|n| n.name == spec.name) {
            if existing.cluster != spec.cluster || existing.group != spec.group {
                return Err(ProviderError::Invalid(format!(
                    "a node named {} already exists in cluster {} group {}",
                    spec.name, existing.cluster, existing.group
                )));
            }
            return Ok(Self::node_view(&state, existing));
        }
        if let Some(region) = spec.region.as_deref().filter(|r| *r != REGION) {
            return Err(ProviderError::Invalid(format!(
                "field region: the local cloud has one region, {REGION:?}, not {region:?}"
            )));
        }
        let image = NodeImage::parse(spec.image.as_deref())?;
        if image == NodeImage::Debian12 {
            machine::check_inotify(state.machines.len() + 1)?;
        }
        let (private, public, public6) = allocate(&state)?;
        let id = state.next_id;
        let lab = Lab::new(&state.lab);
        // A machine is reached over SSH from the lab's outside namespace (the internet of the
        // lab), at its public address, as an operator reaches a Linode.
        let access = match image {
            NodeImage::Netns => Access::Netns { netns: lab.node_ns(&spec.name) },
            NodeImage::Debian12 => {
                Access::Ssh { host: public.to_string(), port: 22, user: "root".into(), netns: Some(lab.outside_ns()) }
            }
        };
        let node = Node {
            cluster: spec.cluster.clone(),
            group: spec.group.clone(),
            name: spec.name.clone(),
            provider: ProviderName::Local,
            provider_id: id.to_string(),
            region: REGION.into(),
            status: Status::Provisioning,
            private_ipv4: vec![private],
            public_ipv4: vec![public],
            private_ipv6: vec![],
            public_ipv6: vec![public6],
            tags: spec.tags.clone(),
            access: Some(access),
            volumes: vec![],
        };
        state.next_id += 1;
        state.nodes.push(node.clone());
        if image == NodeImage::Debian12 {
            state.machines.insert(node.name.clone());
        }
        self.save(&state)?;
        crash_point("node-recorded");
        if !state.lab_ready {
            lab.ensure()?;
            state.lab_ready = true;
        }
        lab.ensure_node(&node, true)
            .and_then(|()| self.ensure_machine(&state, &node, seed, true))
            .inspect_err(|e| tracing::warn!(node = %node.name, "create failed: {e}; the next run finishes it"))?;
        let done = if image == NodeImage::Debian12 { Status::Booting } else { Status::Running };
        set_status(&mut state, &node.name, done);
        self.save(&state)?;
        Ok(Self::node_view(&state, Self::find(&state, &node.name)?))
    }

    /// The images and mirror this cloud's machines use.
    pub fn images(&self) -> Images {
        Images::new(&self.dir)
    }

    /// The stable device path of a volume: a symlink to whichever loop device backs it now.
    fn device_link(&self, label: &Name) -> PathBuf {
        self.dir.join("dev").join(format!("lct-volume-{label}"))
    }

    fn backing_file(&self, label: &Name) -> PathBuf {
        self.dir.join("volumes").join(format!("{label}.img"))
    }

    fn attach_loop(&self, label: &Name) -> Result<String, ProviderError> {
        let file = self.backing_file(label);
        let device = match net::loops_of(&file)?.into_iter().next() {
            Some(dev) => dev,
            None => net::run("losetup", &["--find", "--show", &file.to_string_lossy()])?.trim().to_string(),
        };
        let link = self.device_link(label);
        let io = |what: &Path| {
            let what = what.display().to_string();
            move |source| ProviderError::Io { what, error: source }
        };
        fs::create_dir_all(link.parent().expect("has parent")).map_err(io(&link))?;
        let tmp = link.with_extension("new");
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&device, &tmp).map_err(io(&tmp))?;
        fs::rename(&tmp, &link).map_err(io(&link))?;
        Ok(link.display().to_string())
    }

    fn detach_loops(&self, label: &Name) -> Result<(), ProviderError> {
        let file = self.backing_file(label);
        if file.exists() {
            for dev in net::loops_of(&file)? {
                net::run("losetup", &["--detach", &dev])?;
            }
        }
        let _ = fs::remove_file(self.device_link(label));
        Ok(())
    }

    /// Finishes what a dead run left and boots the machines that should run and do not: what
    /// a machine's supervisor asks for when the machine rebooted itself.
    pub fn repair_after_reboot(&self) -> Result<(), ProviderError> {
        self.begin().map(drop)
    }

    /// Repairs every node and volume, step by step.
    pub fn repair_all(&self) -> Result<(), ProviderError> {
        let (_lock, mut state) = self.begin()?;
        self.repair(&mut state, true)
    }

    /// Deletes every node and volume, the lab and the outside namespaces, and the state.
    pub fn destroy(&self) -> Result<(), ProviderError> {
        let (_lock, mut state) = self.begin()?;
        for node in state.nodes.clone() {
            set_status(&mut state, &node.name, Status::Deleting);
            self.save(&state)?;
            self.finish_delete(&mut state, &node)?;
        }
        // Machines no node of the state owns (its file lost, or older than they are): their
        // containers and overlays go too.
        for machine in Machine::all_on_disk(&self.dir) {
            tracing::warn!(machine = %machine.dir().display(), "removing a machine of this lab that no node owns");
            machine.remove()?;
        }
        for volume in state.volumes.clone() {
            self.detach_loops(&volume.label)?;
            let _ = fs::remove_file(self.backing_file(&volume.label));
        }
        let lab = Lab::new(&state.lab);
        lab.sweep(&[lab.lab_ns(), lab.outside_ns()].into())?;
        lab.remove()?;
        let _ = fs::remove_file(self.state_path());
        let _ = fs::remove_dir_all(self.dir.join("dev"));
        let _ = fs::remove_dir_all(self.dir.join("volumes"));
        let _ = fs::remove_dir(self.dir.join("machines"));
        Ok(())
    }

    /// A summary of the lab: its name, namespaces and whether they exist.
    pub fn status(&self) -> Result<LabStatus, ProviderError> {
        let state = self.load()?;
        let lab = Lab::new(&state.lab);
        Ok(LabStatus {
            lab: state.lab.clone(),
            lab_namespace: lab.lab_ns(),
            lab_namespace_exists: net::netns_exists(&lab.lab_ns()),
            outside_namespace: lab.outside_ns(),
            outside_namespace_exists: net::netns_exists(&lab.outside_ns()),
            outside_ipv4: OUTSIDE_IPV4,
            outside_ipv6: OUTSIDE_IPV6,
            nodes: state.nodes.len(),
            volumes: state.volumes.len(),
        })
    }

    fn node_view(state: &CloudState, node: &Node) -> Node {
        let mut node = node.clone();
        node.volumes = state
            .volumes
            .iter()
            .filter(|v| v.attached_to.as_ref() == Some(&node.name))
            .map(|v| VolumeAttachment {
                label: v.label.clone(),
                size_mib: v.size_mib,
                // Inside a machine, the volume's path is where the machine sees it.
                path: if state.machines.contains(&node.name) {
                    machine::volume_path_in_machine(v.label.as_str())
                } else {
                    v.path.clone().unwrap_or_default()
                },
            })
            .collect();
        node
    }

    fn find<'a>(state: &'a CloudState, name: &Name) -> Result<&'a Node, ProviderError> {
        state.nodes.iter().find(|n| &n.name == name).ok_or_else(|| ProviderError::NoSuchNode(name.clone()))
    }

    fn set_power(&self, name: &Name, up: bool) -> Result<Node, ProviderError> {
        let (_lock, mut state) = self.begin()?;
        let node = Self::find(&state, name)?.clone();
        let machine = state.machines.contains(name);
        if !up {
            self.ensure_machine(&state, &node, Seed::Merged(None), false)?;
        }
        Lab::new(&state.lab).set_links(&node, up)?;
        if up {
            self.ensure_machine(&state, &node, Seed::Merged(None), true)?;
        }
        let status = match (up, machine) {
            (false, _) => Status::Offline,
            (true, true) => Status::Booting,
            (true, false) => Status::Running,
        };
        set_status(&mut state, name, status);
        self.save(&state)?;
        Ok(Self::node_view(&state, Self::find(&state, name)?))
    }

    /// Waits for a machine to answer SSH (through the lab's outside namespace, with lct's
    /// pinned host key) and for cloud-init to finish; then records it running.
    async fn wait_machine(&self, node: Node) -> Result<Node, ProviderError> {
        let Some(Access::Ssh { host, port, user, netns }) = node.access.clone() else { return Ok(node) };
        if let Ok(addr) = host.parse::<IpAddr>() {
            // The lab's addresses from the lab's namespace only (lct_core::reach).
            lct_core::reach::check(addr, netns.as_deref()).map_err(|e| ProviderError::Invalid(e.to_string()))?;
        }
        let ssh = lct_core::ssh::SshFiles::new(self.state_dir());
        let mut argv: Vec<String> = Vec::new();
        if let Some(ns) = &netns {
            argv.extend(["ip", "netns", "exec", ns].map(String::from));
        }
        argv.push("ssh".into());
        for o in ssh.client_options() {
            argv.extend(["-o".into(), o]);
        }
        argv.extend([
            "-o".into(),
            "ConnectTimeout=5".into(),
            "-p".into(),
            port.to_string(),
            "-l".into(),
            user,
            host.clone(),
        ]);
        let run = |remote: &str| {
            let mut cmd = tokio::process::Command::new(&argv[0]);
            cmd.args(&argv[1..]).arg(remote).stdin(std::process::Stdio::null()).kill_on_drop(true);
            cmd
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
        // First, until sshd listens (after cloud-init's network stage): a plain connect from
        // the namespace, no process per try (ten machines booting on two cores feel every
        // ssh client started in vain).
        if let (Some(ns), Ok(ip)) = (&netns, host.parse::<IpAddr>()) {
            let address = std::net::SocketAddr::new(ip, port);
            loop {
                let ns = ns.clone();
                let open = tokio::task::spawn_blocking(move || net::connects_from(&ns, address)).await.unwrap_or(false);
                if open || std::time::Instant::now() > deadline {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
        // Then one SSH session that waits for cloud-init's result file (written at the end of
        // its final stage, also after a restart: /run is a tmpfs). A shell loop, not
        // `cloud-init status --wait`: that is two Python starts per machine, and a poll every
        // 0.25 s, while the other machines still boot on the same two cores.
        let wait_for_result = format!("r={RESULT_PATH}; while [ ! -e $r ]; do sleep 0.1; done; cat $r");
        let mut last = String::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let out = tokio::time::timeout(left, run(&wait_for_result).output()).await;
            match out {
                Ok(Ok(out)) if out.status.success() => {
                    boot_result(&out.stdout).map_err(|e| ProviderError::Invalid(format!("node {}: {e}", node.name)))?;
                    break;
                }
                Ok(Ok(out)) => last = String::from_utf8_lossy(&out.stderr).trim().to_string(),
                Ok(Err(error)) => return Err(ProviderError::Io { what: "cannot run ssh".into(), error }),
                Err(_) => {}
            }
            if std::time::Instant::now() > deadline {
                return Err(ProviderError::Invalid(format!(
                    "node {}: no SSH answer with its pinned host key and cloud-init's result within 180 s: {last}",
                    node.name
                )));
            }
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
        let (_lock, mut state) = self.begin()?;
        if Self::find(&state, &node.name)?.status == Status::Booting {
            set_status(&mut state, &node.name, Status::Running);
            self.save(&state)?;
        }
        Ok(Self::node_view(&state, Self::find(&state, &node.name)?))
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

/// The names a node's host key is known by: its name and addresses.
fn ssh_names(node: &Node) -> Vec<String> {
    let mut names = vec![node.name.to_string()];
    names.extend(node.public_ipv4.iter().map(|a| a.to_string()));
    names.extend(node.private_ipv4.iter().map(|a| a.to_string()));
    names.extend(node.public_ipv6.iter().map(|a| a.to_string()));
    names
}

fn set_status(state: &mut CloudState, name: &Name, status: Status) {
    if let Some(n) = state.nodes.iter_mut().find(|n| &n.name == name) {
        n.status = status;
    }
}

fn is_root() -> bool {
    // The effective uid of this process; /proc/self is always ours.
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0")))
        .unwrap_or(false)
}

/// Picks the lowest free addresses for a new node.
fn allocate(state: &CloudState) -> Result<(Ipv4Addr, Ipv4Addr, Ipv6Addr), ProviderError> {
    let used: BTreeSet<IpAddr> = state
        .nodes
        .iter()
        .flat_map(|n| {
            n.private_ipv4
                .iter()
                .chain(&n.public_ipv4)
                .map(|a| IpAddr::V4(*a))
                .chain(n.public_ipv6.iter().map(|a| IpAddr::V6(*a)))
        })
        .collect();
    // 192.168.128.0/17 without its network and broadcast addresses.
    let private = (u32::from(Ipv4Addr::new(192, 168, 128, 1))..u32::from(Ipv4Addr::new(192, 168, 255, 255)))
        .map(Ipv4Addr::from)
        .find(|a| !used.contains(&IpAddr::V4(*a)))
        .ok_or_else(|| ProviderError::Invalid("the private network 192.168.128.0/17 is full".into()))?;
    let public = PUBLIC_RANGES
        .iter()
        .flat_map(|[a, b, c]| (1..=253u8).map(move |d| Ipv4Addr::new(*a, *b, *c, d)))
        .find(|a| !used.contains(&IpAddr::V4(*a)))
        .ok_or_else(|| ProviderError::Invalid("the public networks are full (506 addresses)".into()))?;
    let public6 = (1..0xff00u16)
        .map(|n| Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, n))
        .find(|a| !used.contains(&IpAddr::V6(*a)))
        .expect("more IPv6 addresses than IPv4 ones");
    Ok((private, public, public6))
}

/// The namespaces and links of one lab.
struct Lab {
    name: String,
}

impl Lab {
    fn new(name: &str) -> Self {
        Lab { name: name.to_string() }
    }

    fn lab_ns(&self) -> String {
        format!("{}-lab", self.name)
    }

    fn outside_ns(&self) -> String {
        format!("{}-outside", self.name)
    }

    fn node_ns(&self, node: &Name) -> String {
        format!("{}-{node}", self.name)
    }

    /// Marks a namespace as this lab's, so a sweep after lost state knows what is ours. The
    /// marks live in /run, like the namespaces themselves (both go with a reboot); not in
    /// /etc/netns/NS/, whose every file `ip netns exec` bind-mounts over /etc.
    fn mark(&self, ns: &str) -> Result<(), ProviderError> {
        let marker = Path::new(MARKER_DIR).join(ns);
        fs::create_dir_all(MARKER_DIR)
            .and_then(|()| fs::write(&marker, format!("{}\n", self.name)))
            .map_err(|source| ProviderError::Io { what: marker.display().to_string(), error: source })
    }

    fn unmark(ns: &str) {
        let _ = fs::remove_file(Path::new(MARKER_DIR).join(ns));
    }

    /// Namespaces that carry this lab's mark.
    fn marked_namespaces(&self) -> Vec<String> {
        let prefix = format!("{}-", self.name);
        let Ok(entries) = fs::read_dir(MARKER_DIR) else {
            return Vec::new();
        };
        let mut found: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|ns| ns.starts_with(&prefix))
            .filter(|ns| {
                fs::read_to_string(Path::new(MARKER_DIR).join(ns)).is_ok_and(|owner| owner.trim() == self.name)
            })
            .collect();
        found.sort();
        found
    }

    /// Removes marked namespaces that no node of the state owns (left by lost state).
    fn sweep(&self, keep: &BTreeSet<String>) -> Result<Vec<String>, ProviderError> {
        let mut removed = Vec::new();
        for ns in self.marked_namespaces() {
            if !keep.contains(&ns) {
                tracing::warn!(namespace = %ns, "removing a namespace of this lab that no node owns");
                net::delete_netns(&ns)?;
                let _ = fs::remove_dir_all(Path::new("/etc/netns").join(&ns));
                Self::unmark(&ns);
                removed.push(ns);
            }
        }
        Ok(removed)
    }

    /// The lab's namespace with its two bridges, and the outside namespace joined to the
    /// public bridge; safe to run again.
    fn ensure(&self) -> Result<(), ProviderError> {
        let lab = self.lab_ns();
        let outside = self.outside_ns();
        self.mark(&lab)?;
        self.mark(&outside)?;
        for ns in [&lab, &outside] {
            if !net::netns_exists(ns) {
                net::ip(&["netns", "add", ns])?;
            }
        }
        let lab_links = net::links_in(&lab)?;
        let outside_links = net::links_in(&outside)?;
        let mut in_lab = vec!["link set lo up".to_string()];
        for bridge in [PRIVATE_BRIDGE, PUBLIC_BRIDGE] {
            if !lab_links.contains(bridge) {
                in_lab.push(format!("link add {bridge} type bridge"));
            }
            in_lab.push(format!("link set {bridge} up"));
        }
        in_lab.extend(veth_pair(&lab, &lab_links, "out", &outside, "eth0", outside_links.contains("eth0"))?);
        in_lab.push(format!("link set out master {PUBLIC_BRIDGE} up"));
        net::ip_batch(&lab, &in_lab)?;
        let mut in_outside = vec![
            "link set lo up".to_string(),
            format!("addr replace {OUTSIDE_IPV4}/24 dev eth0"),
            format!("addr replace {OUTSIDE_IPV6}/64 dev eth0 nodad"),
            "link set eth0 up".to_string(),
        ];
        in_outside.extend(PUBLIC_RANGES.iter().map(|[a, b, c]| format!("route replace {a}.{b}.{c}.0/24 dev eth0")));
        net::ip_batch(&outside, &in_outside)
    }

    fn remove(&self) -> Result<(), ProviderError> {
        for ns in [self.outside_ns(), self.lab_ns()] {
            net::delete_netns(&ns)?;
            let _ = fs::remove_dir_all(Path::new("/etc/netns").join(&ns));
            Self::unmark(&ns);
        }
        Ok(())
    }

    /// A node's namespace, its two veth pairs to the lab's bridges, its addresses and routes:
    /// a batch of `ip` commands per namespace, each step safe to run again (a crash half-way
    /// is finished by the next run).
    fn ensure_node(&self, node: &Node, up: bool) -> Result<(), ProviderError> {
        let lab = self.lab_ns();
        let ns = self.node_ns(&node.name);
        let id = &node.provider_id;
        self.mark(&ns)?;
        write_netns_etc(&ns, node)?;
        let fresh = !net::netns_exists(&ns);
        if fresh {
            net::ip(&["netns", "add", &ns])?;
        }
        // Keep IPv6 quiet: no router solicitations or autoconfigured addresses.
        net::net_sysctl_in(&ns, "ipv6/conf/default/accept_ra", "0")?;
        let node_links = if fresh { BTreeSet::new() } else { net::links_in(&ns)? };
        let lab_links = net::links_in(&lab)?;
        let mut in_lab = Vec::new();
        for (veth, inside, bridge) in
            [(format!("p{id}"), "eth0", PRIVATE_BRIDGE), (format!("u{id}"), "eth1", PUBLIC_BRIDGE)]
        {
            in_lab.extend(veth_pair(&lab, &lab_links, &veth, &ns, inside, node_links.contains(inside))?);
            in_lab.push(format!("link set {veth} master {bridge} up"));
        }
        net::ip_batch(&lab, &in_lab)?;
        let mut in_node = vec!["link set lo up".to_string()];
        in_node.extend(node.private_ipv4.iter().map(|a| format!("addr replace {a}/{PRIVATE_PREFIX} dev eth0")));
        in_node.extend(node.public_ipv4.iter().map(|a| format!("addr replace {a}/24 dev eth1")));
        in_node.extend(node.public_ipv6.iter().map(|a| format!("addr replace {a}/64 dev eth1 nodad")));
        in_node.extend(Self::link_commands(up));
        net::ip_batch(&ns, &in_node)
    }

    /// A node's namespace made anew, as a rebooted computer's network stack is: the old one
    /// deleted (with whatever rules, connections and settings it held), then the node's
    /// links, addresses and routes set up again.
    fn renew_node(&self, node: &Node) -> Result<(), ProviderError> {
        net::delete_netns(&self.node_ns(&node.name))?;
        self.ensure_node(node, true)
    }

    /// What brings a node's links up (with its routes) or down.
    fn link_commands(up: bool) -> Vec<String> {
        let state = if up { "up" } else { "down" };
        let mut commands: Vec<String> = ["eth0", "eth1"].iter().map(|dev| format!("link set {dev} {state}")).collect();
        if up {
            // Both public ranges share one link, as if the provider's router joined them.
            commands.extend(PUBLIC_RANGES.iter().map(|[a, b, c]| format!("route replace {a}.{b}.{c}.0/24 dev eth1")));
        }
        commands
    }

    fn set_links(&self, node: &Node, up: bool) -> Result<(), ProviderError> {
        net::ip_batch(&self.node_ns(&node.name), &Self::link_commands(up))
    }

    fn remove_node(&self, node: &Node) -> Result<(), ProviderError> {
        let lab = self.lab_ns();
        net::delete_netns(&self.node_ns(&node.name))?;
        // Deleting the namespace takes the veth pairs with it; a crash mid-create may have
        // left a lab-side end alone.
        if net::netns_exists(&lab) {
            for dev in [format!("p{}", node.provider_id), format!("u{}", node.provider_id)] {
                if net::link_exists(&lab, &dev) {
                    net::delete_link(&lab, &dev)?;
                }
            }
        }
        Self::unmark(&self.node_ns(&node.name));
        let etc = Path::new("/etc/netns").join(self.node_ns(&node.name));
        match fs::remove_dir_all(&etc) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(ProviderError::Io { what: etc.display().to_string(), error: source }),
        }
    }
}

/// The batch line (in the lab's namespace) that makes the veth pair `outer` (in the lab) to
/// `inner` (in `ns`), when the inside end is missing; a lab end left alone (its namespace
/// made again after a crash between the two) is deleted first.
fn veth_pair(
    lab: &str,
    lab_links: &BTreeSet<String>,
    outer: &str,
    ns: &str,
    inner: &str,
    inner_exists: bool,
) -> Result<Option<String>, ProviderError> {
    if inner_exists {
        return Ok(None);
    }
    if lab_links.contains(outer) {
        net::delete_link(lab, outer)?;
    }
    Ok(Some(format!("link add {outer} type veth peer name {inner} netns {ns}")))
}

/// The node's own `/etc/hosts` and `/etc/resolv.conf`, which `ip netns exec` bind-mounts
/// over the machine's. An existing hosts file is left alone: lct-hosts manages blocks in it.
fn write_netns_etc(ns: &str, node: &Node) -> Result<(), ProviderError> {
    let dir = Path::new("/etc/netns").join(ns);
    let io = |p: &Path| {
        let what = p.display().to_string();
        move |source| ProviderError::Io { what, error: source }
    };
    fs::create_dir_all(&dir).map_err(io(&dir))?;
    let hosts = dir.join("hosts");
    if !hosts.exists() {
        let mut text = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
        if let Some(a) = node.private_ipv4.first() {
            text.push_str(&format!("{a}\t{}\n", node.name));
        }
        atomic_write(&hosts, text.as_bytes(), 0o644).map_err(io(&hosts))?;
    }
    let resolv = dir.join("resolv.conf");
    if !resolv.exists() {
        // No resolver runs in the lab until lct-dns does; fail fast on the node itself
        // rather than fall back to the machine's resolver.
        let text = "# lct local cloud: lct-dns replaces this when it serves the lab\nnameserver 127.0.0.1\noptions timeout:1 attempts:1\n";
        atomic_write(&resolv, text.as_bytes(), 0o644).map_err(io(&resolv))?;
    }
    Ok(())
}

/// Debug builds can be told to die after a named step, so tests can check that the next run
/// repairs what a crash left (`LCT_LOCAL_CRASH_AFTER=node-recorded|node-private-link`).
fn crash_point(step: &str) {
    if cfg!(debug_assertions) && std::env::var("LCT_LOCAL_CRASH_AFTER").is_ok_and(|s| s == step) {
        eprintln!("lct-api: crashing after {step} (LCT_LOCAL_CRASH_AFTER)");
        std::process::abort();
    }
}

impl Provider for LocalCloud {
    fn name(&self) -> ProviderName {
        ProviderName::Local
    }

    async fn list(&self) -> Result<Vec<Node>, ProviderError> {
        let state = self.load()?;
        let mut nodes: Vec<Node> = state.nodes.iter().map(|n| Self::node_view(&state, n)).collect();
        nodes.sort_by(|a, b| (&a.cluster, &a.name).cmp(&(&b.cluster, &b.name)));
        Ok(nodes)
    }

    async fn create(&self, spec: &NodeSpec) -> Result<Node, ProviderError> {
        self.create_seeded(spec, Seed::Merged(spec.user_data.as_deref()))
    }
    async fn wait_ready(&self, node: Node) -> Result<Node, ProviderError> {
        if node.status == Status::Booting { self.wait_machine(node).await } else { Ok(node) }
    }

    async fn start(&self, name: &Name) -> Result<Node, ProviderError> {
        let node = self.set_power(name, true)?;
        self.wait_ready(node).await
    }

    async fn stop(&self, name: &Name) -> Result<Node, ProviderError> {
        self.set_power(name, false)
    }

    async fn delete(&self, name: &Name) -> Result<bool, ProviderError> {
        let (_lock, mut state) = self.begin()?;
        let Ok(node) = Self::find(&state, name).cloned() else {
            return Ok(false);
        };
        set_status(&mut state, name, Status::Deleting);
        self.save(&state)?;
        self.finish_delete(&mut state, &node)?;
        Ok(true)
    }

    async fn volumes(&self) -> Result<Vec<Volume>, ProviderError> {
        let mut volumes = self.load()?.volumes;
        volumes.sort_by(|a, b| a.label.cmp(&b.label));
        Ok(volumes)
    }

    async fn create_volume(&self, spec: &VolumeSpec) -> Result<Volume, ProviderError> {
        if spec.size_mib == 0 {
            return Err(ProviderError::Invalid("field size: a volume needs at least 1 MiB".into()));
        }
        let (_lock, mut state) = self.begin()?;
        if let Some(v) = state.volumes.iter().find(|v| v.label == spec.label) {
            if v.size_mib != spec.size_mib {
                return Err(ProviderError::Invalid(format!(
                    "volume {} exists with {} MiB, not {} MiB",
                    spec.label, v.size_mib, spec.size_mib
                )));
            }
            return Ok(v.clone());
        }
        let file = self.backing_file(&spec.label);
        let io = |source| ProviderError::Io { what: file.display().to_string(), error: source };
        fs::create_dir_all(file.parent().expect("has parent")).map_err(io)?;
        let f = fs::OpenOptions::new().write(true).create(true).truncate(false).open(&file).map_err(io)?;
        f.set_len(spec.size_mib * 1024 * 1024).map_err(io)?;
        let volume = Volume {
            label: spec.label.clone(),
            size_mib: spec.size_mib,
            provider: ProviderName::Local,
            provider_id: state.next_id.to_string(),
            region: REGION.into(),
            status: "active".into(),
            attached_to: None,
            path: None,
        };
        state.next_id += 1;
        state.volumes.push(volume.clone());
        self.save(&state)?;
        Ok(volume)
    }

    async fn attach_volume(&self, label: &Name, node: &Name) -> Result<Volume, ProviderError> {
        let (_lock, mut state) = self.begin()?;
        Self::find(&state, node)?;
        let volume = state
            .volumes
            .iter()
            .find(|v| &v.label == label)
            .ok_or_else(|| ProviderError::NoSuchVolume(label.clone()))?;
        if let Some(other) = volume.attached_to.as_ref().filter(|n| *n != node) {
            return Err(ProviderError::Invalid(format!("volume {label} is attached to {other}; detach it first")));
        }
        let path = self.attach_loop(label)?;
        if state.machines.contains(node) {
            let n = Self::find(&state, node)?.clone();
            self.machine(&state, &n).add_volume(label.as_str(), &self.device_link(label))?;
        }
        let v = state.volumes.iter_mut().find(|v| &v.label == label).expect("found above");
        v.attached_to = Some(node.clone());
        v.path = Some(path);
        let v = v.clone();
        self.save(&state)?;
        Ok(v)
    }

    async fn detach_volume(&self, label: &Name) -> Result<Volume, ProviderError> {
        let (_lock, mut state) = self.begin()?;
        let Some(volume) = state.volumes.iter().find(|v| &v.label == label).cloned() else {
            return Err(ProviderError::NoSuchVolume(label.clone()));
        };
        self.remove_from_machine(&state, &volume)?;
        self.detach_loops(label)?;
        let v = state.volumes.iter_mut().find(|v| &v.label == label).expect("found above");
        v.attached_to = None;
        v.path = None;
        let v = v.clone();
        self.save(&state)?;
        Ok(v)
    }

    async fn delete_volume(&self, label: &Name) -> Result<bool, ProviderError> {
        let (_lock, mut state) = self.begin()?;
        let Some(volume) = state.volumes.iter().find(|v| &v.label == label).cloned() else {
            return Ok(false);
        };
        self.remove_from_machine(&state, &volume)?;
        self.detach_loops(label)?;
        let file = self.backing_file(label);
        match fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(ProviderError::Io { what: file.display().to_string(), error: source });
            }
        }
        state.volumes.retain(|v| &v.label != label);
        self.save(&state)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocation_takes_lowest_free_addresses() {
        let mut state = CloudState { lab: "t".into(), next_id: 1, ..Default::default() };
        let (a, b, c) = allocate(&state).unwrap();
        assert_eq!(
            (a, b, c),
            (Ipv4Addr::new(192, 168, 128, 1), Ipv4Addr::new(203, 0, 113, 1), "2001:db8::1".parse().unwrap())
        );
        let node: Node = serde_json::from_value(serde_json::json!({
            "cluster": "c", "group": "g", "name": "n", "provider": "local", "status": "running",
            "private_ipv4": ["192.168.128.1"], "public_ipv4": ["203.0.113.1"], "public_ipv6": ["2001:db8::1"]
        }))
        .unwrap();
        state.nodes.push(node);
        let (a, b, _) = allocate(&state).unwrap();
        assert_eq!((a, b), (Ipv4Addr::new(192, 168, 128, 2), Ipv4Addr::new(203, 0, 113, 2)));
        // Past 203.0.113.253 the second documentation range is used.
        for d in 2..=253u8 {
            let mut n = state.nodes[0].clone();
            n.public_ipv4 = vec![Ipv4Addr::new(203, 0, 113, d)];
            n.private_ipv4 = vec![];
            n.public_ipv6 = vec![];
            state.nodes.push(n);
        }
        assert_eq!(allocate(&state).unwrap().1, Ipv4Addr::new(198, 51, 100, 1));
    }
}
