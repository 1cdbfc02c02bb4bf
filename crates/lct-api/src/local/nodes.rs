//! Nodes made, powered and waited for: a namespace with its links and addresses, and, for a
//! machine node, its container booted and answering SSH with cloud-init finished.

use std::net::IpAddr;

use lct_core::record::{Access, Name, Node, NodeSpec, ProviderName, Status};

use super::address::allocate;
use super::lab::Lab;
use super::machine::{self, NodeImage};
use super::net;
use super::state::set_status;
use super::{LocalCloud, REGION, Seed};
use crate::ProviderError;
use crate::cloudinit::{RESULT_PATH, boot_result};
use crate::disk_image::LctImage;

impl LocalCloud {
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
        // A machine from an lct image: the image is found (and restored, once) before the
        // lab's lock is taken, and before anything of the node is made.
        let golden = match spec.image.as_deref().and_then(LctImage::parse) {
            Some(lct) => Some(self.images().golden(&lct)?),
            None => None,
        };
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
        let image = if golden.is_some() { NodeImage::Debian12 } else { NodeImage::parse(spec.image.as_deref())? };
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
        if let Some(golden) = &golden {
            self.machine(&state, &node).set_lower(&golden.root())?;
        }
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

    pub(super) fn set_power(&self, name: &Name, up: bool) -> Result<Node, ProviderError> {
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
    pub(super) async fn wait_machine(&self, node: Node) -> Result<Node, ProviderError> {
        let Some(Access::Ssh { host, port, user, netns }) = node.access.clone() else { return Ok(node) };
        if let Ok(addr) = host.parse::<IpAddr>() {
            // The lab's addresses from the lab's namespace only (lct_core::reach).
            lct_core::reach::check(addr, netns.as_deref()).map_err(|e| ProviderError::Invalid(e.to_string()))?;
        }
        let ssh = lct_core::ssh::SshFiles::of_state_or(self.state_dir())
            .map_err(|error| ProviderError::Io { what: "lct's SSH files".into(), error })?;
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
        // ssh client started in vain). The pause grows from 50 to 200 ms: a lone machine is
        // seen at once, and 100 machines booting for tens of seconds on two cores are not
        // asked 2,000 times a second (each try a thread entering the namespace).
        if let (Some(ns), Ok(ip)) = (&netns, host.parse::<IpAddr>()) {
            let address = std::net::SocketAddr::new(ip, port);
            let mut pause = std::time::Duration::from_millis(50);
            loop {
                let ns = ns.clone();
                let open = tokio::task::spawn_blocking(move || net::connects_from(&ns, address)).await.unwrap_or(false);
                if open || std::time::Instant::now() > deadline {
                    break;
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 3 / 2).min(std::time::Duration::from_millis(200));
            }
        }
        // Then one SSH session that waits for cloud-init's result file (written at the end of
        // its final stage, also after a restart: /run is a tmpfs). A shell loop, not
        // `cloud-init status --wait`: that is two Python starts per machine, and a poll every
        // 0.25 s, while the other machines still boot on the same two cores.
        // The loop waits on a FIFO of its own with bash's `read -t` (a builtin: no process a
        // turn; `sleep 0.1` was ten processes a second per machine, a core's worth with 100
        // machines booting); a shell without `read -t` (status 2, not a timeout's >128)
        // sleeps instead.
        let wait_for_result = format!(
            "r={RESULT_PATH}; if [ ! -e $r ]; then d=$(mktemp -d) && mkfifo $d/w && exec 3<>$d/w; rm -rf \"$d\"; \
             while [ ! -e $r ]; do read -t 0.1 -u 3 _ 2>/dev/null; [ $? -gt 128 ] || sleep 0.1; done; fi; cat $r"
        );
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
        self.blocking(move |cloud| {
            let (_lock, mut state) = cloud.begin()?;
            if Self::find(&state, &node.name)?.status == Status::Booting {
                set_status(&mut state, &node.name, Status::Running);
                cloud.save(&state)?;
            }
            Ok(Self::node_view(&state, Self::find(&state, &node.name)?))
        })
        .await
    }

    pub(super) fn list_nodes(&self) -> Result<Vec<Node>, ProviderError> {
        let state = self.load()?;
        let mut nodes: Vec<Node> = state.nodes.iter().map(|n| Self::node_view(&state, n)).collect();
        nodes.sort_by(|a, b| (&a.cluster, &a.name).cmp(&(&b.cluster, &b.name)));
        Ok(nodes)
    }

    pub(super) fn delete_node(&self, name: &Name) -> Result<bool, ProviderError> {
        let (_lock, mut state) = self.begin()?;
        let Ok(node) = Self::find(&state, name).cloned() else {
            return Ok(false);
        };
        set_status(&mut state, name, Status::Deleting);
        self.save(&state)?;
        self.finish_delete(&mut state, &node)?;
        Ok(true)
    }
}

/// Debug builds can be told to die after a named step, so tests can check that the next run
/// repairs what a crash left (`LCT_LOCAL_CRASH_AFTER=node-recorded|node-private-link`).
pub(super) fn crash_point(step: &str) {
    if cfg!(debug_assertions) && std::env::var("LCT_LOCAL_CRASH_AFTER").is_ok_and(|s| s == step) {
        eprintln!("lct-api: crashing after {step} (LCT_LOCAL_CRASH_AFTER)");
        std::process::abort();
    }
}
