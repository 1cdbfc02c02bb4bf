//! Nodes made, powered and waited for: a namespace with its links and addresses, and, for a
//! machine node, its container booted and answering SSH with cloud-init finished.

use std::net::IpAddr;

use lct_core::record::{Access, Name, Node, NodeSpec, ProviderName, Status};

use super::address::allocate;
use super::boot_window;
use super::golden::Golden;
use super::lab::Lab;
use super::machine::{self, NodeImage};
use super::net;
use super::region::check_region;
use super::state::{CloudState, set_status};
use super::{LocalCloud, REGION, Seed};
use crate::ProviderError;
use crate::cloudinit::{RESULT_PATH, boot_result};
use crate::disk_image::LctImage;

/// A node's record as a create found or made it, under the lab's lock.
enum Recorded {
    /// A node of that name was there already (creating is idempotent by name).
    Existing(Node),
    /// Recorded now (provisioning): its namespace and machine are still to be made.
    New(Node),
}

/// How many nodes of one batch are made side by side (namespace links, overlay, first-boot
/// files, the container's spawn): each is a few short processes, so a few at once keep both
/// cores busy while one waits for its container's pid, without crowding out the boots.
const BATCH_WORKERS: usize = 4;

impl LocalCloud {
    /// What is checked of a spec before the lab's lock is taken: the reserved names and the
    /// region's name (it becomes a bridge's).
    fn check_spec(spec: &NodeSpec) -> Result<(), ProviderError> {
        if matches!(spec.name.as_str(), "lab" | "outside") {
            return Err(ProviderError::Invalid(format!(
                "node name {:?} is reserved by the local cloud",
                spec.name.as_str()
            )));
        }
        check_region("region", spec.region.as_deref().unwrap_or(REGION))
    }

    /// The lct image a spec names, found (and restored, once), before the lab's lock is taken
    /// and before anything of the node is made; `None` for a provider image.
    fn golden_of(&self, image: Option<&str>) -> Result<Option<Golden>, ProviderError> {
        match image.and_then(LctImage::parse) {
            Some(lct) => Ok(Some(self.images().golden(&lct)?)),
            None => Ok(None),
        }
    }

    /// Records a node in `state` (addresses allocated, provisioning; not saved), or finds the
    /// node of that name made before.
    fn record(
        &self,
        state: &mut CloudState,
        spec: &NodeSpec,
        golden: Option<&Golden>,
    ) -> Result<Recorded, ProviderError> {
        let region = spec.region.as_deref().unwrap_or(REGION);
        if let Some(existing) = state.nodes.iter().find(|n| n.name == spec.name) {
            if spec.region.as_ref().is_some_and(|r| *r != existing.region) {
                return Err(ProviderError::Invalid(format!(
                    "field region: node {} exists in region {}, not {}",
                    spec.name,
                    existing.region,
                    spec.region.as_deref().unwrap_or_default()
                )));
            }
            if existing.cluster != spec.cluster || existing.group != spec.group {
                return Err(ProviderError::Invalid(format!(
                    "a node named {} already exists in cluster {} group {}",
                    spec.name, existing.cluster, existing.group
                )));
            }
            return Ok(Recorded::Existing(Self::node_view(state, existing)));
        }
        let image = if golden.is_some() { NodeImage::Debian12 } else { NodeImage::parse(spec.image.as_deref())? };
        if image == NodeImage::Debian12 {
            machine::check_inotify(state.machines.len() + 1)?;
        }
        let (private, public, public6) = allocate(state, region)?;
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
            region: region.into(),
            status: Status::Provisioning,
            private_ipv4: vec![private],
            public_ipv4: vec![public],
            private_ipv6: vec![],
            public_ipv6: vec![public6],
            tags: spec.tags.clone(),
            access: Some(access),
            volumes: vec![],
        };
        if let Some(golden) = golden {
            self.machine(state, &node).set_lower(&golden.root())?;
        }
        state.next_id += 1;
        state.nodes.push(node.clone());
        if image == NodeImage::Debian12 {
            state.machines.insert(node.name.clone());
        }
        Ok(Recorded::New(node))
    }

    /// Makes a recorded node: its namespace and links, and its machine booted (if it is one).
    /// What it leaves undone on an error, the next run finishes (the node stays provisioning).
    fn make(&self, state: &CloudState, node: &Node, seed: Seed<'_>) -> Result<(), ProviderError> {
        Lab::new(&state.lab)
            .ensure_node(node, true)
            .and_then(|()| self.ensure_machine(state, node, seed, true))
            .inspect_err(|e| tracing::warn!(node = %node.name, "create failed: {e}; the next run finishes it"))
    }

    /// The status a made node has: a machine boots (waiting for it is
    /// [`LocalCloud::wait_machine`]), a namespace runs.
    fn made_status(state: &CloudState, node: &Node) -> Status {
        if state.machines.contains(&node.name) { Status::Booting } else { Status::Running }
    }

    /// Creates a node whose machine (if it is one) boots with `seed`: lct's cloud-config with
    /// the user's user-data merged in, or a whole user-data document as given (the Linode double backs
    /// its instances this way, with the document the Linode API was sent).
    pub fn create_seeded(&self, spec: &NodeSpec, seed: Seed<'_>) -> Result<Node, ProviderError> {
        Self::check_spec(spec)?;
        let golden = self.golden_of(spec.image.as_deref())?;
        let (_lock, mut state) = self.begin()?;
        let node = match self.record(&mut state, spec, golden.as_ref())? {
            Recorded::Existing(node) => return Ok(node),
            Recorded::New(node) => node,
        };
        self.save(&state)?;
        crash_point("node-recorded");
        self.ensure_lab(&mut state)?;
        self.make(&state, &node, seed)?;
        let status = Self::made_status(&state, &node);
        set_status(&mut state, &node.name, status);
        self.save(&state)?;
        Ok(Self::node_view(&state, Self::find(&state, &node.name)?))
    }

    /// The lab's own namespaces and bridges, made once (before its first node).
    fn ensure_lab(&self, state: &mut CloudState) -> Result<(), ProviderError> {
        if !state.lab_ready {
            Lab::new(&state.lab).ensure()?;
            state.lab_ready = true;
        }
        Ok(())
    }

    /// Creates many nodes in one hold of the lab's lock: all recorded first, in order (so
    /// addresses follow names) and saved once, then made side by side, each machine's
    /// container spawned as soon as its node is made: with a boot window
    /// ([`boot_window`], by default), at most that many machines booting at once, the next
    /// made as one answers; with none, [`BATCH_WORKERS`] at a time, all booting together.
    /// Waiting for the machines to finish their boots is left to the caller, all at once.
    /// One outcome per spec, in order.
    ///
    /// Crash-safe as one create is: every node is recorded (provisioning) before anything of
    /// it is made, so a run killed half-way leaves records that the next run (any change, or
    /// `lab repair`, `lab down`) finishes or removes. Safe beside other creates: the lock is
    /// held from the first record to the last spawn, so no other run sees a node half-made
    /// (its repair would make it a second time) or allocates the same addresses.
    pub fn create_all(&self, specs: &[NodeSpec]) -> Vec<Result<Node, ProviderError>> {
        let window = match boot_window::from_env() {
            Ok(window) => window,
            Err(e) => return specs.iter().map(|_| Err(clone_error(&e))).collect(),
        };
        let mut outcomes: Vec<Option<Result<Node, ProviderError>>> = Vec::with_capacity(specs.len());
        // Each image is looked up once per batch, before the lock.
        type Found = Result<Option<Golden>, ProviderError>;
        let mut goldens: Vec<(Option<&str>, Found)> = Vec::new();
        let mut checked = Vec::with_capacity(specs.len());
        for spec in specs {
            let image = spec.image.as_deref();
            if !goldens.iter().any(|(i, _)| *i == image) {
                goldens.push((image, self.golden_of(image)));
            }
            let golden = &goldens.iter().find(|(i, _)| *i == image).expect("looked up").1;
            checked.push(Self::check_spec(spec).and_then(|()| match golden {
                Ok(g) => Ok(g.clone()),
                Err(e) => Err(clone_error(e)),
            }));
        }
        let (_lock, mut state) = match self.begin() {
            Ok(begun) => begun,
            Err(e) => return specs.iter().map(|_| Err(clone_error(&e))).collect(),
        };
        let mut to_make = Vec::new();
        for (i, (spec, golden)) in specs.iter().zip(checked).enumerate() {
            let recorded = golden.and_then(|g| self.record(&mut state, spec, g.as_ref()));
            outcomes.push(match recorded {
                Ok(Recorded::Existing(node)) => Some(Ok(node)),
                Ok(Recorded::New(node)) => {
                    to_make.push((i, node));
                    None
                }
                Err(e) => Some(Err(e)),
            });
        }
        if to_make.is_empty() {
            return outcomes.into_iter().map(|o| o.expect("every outcome is known")).collect();
        }
        let fail_all = |outcomes: Vec<Option<Result<Node, ProviderError>>>, e: ProviderError| {
            outcomes.into_iter().map(|o| o.unwrap_or_else(|| Err(clone_error(&e)))).collect()
        };
        if let Err(e) = self.save(&state) {
            return fail_all(outcomes, e);
        }
        crash_point("node-recorded");
        if let Err(e) = self.ensure_lab(&mut state) {
            return fail_all(outcomes, e);
        }
        // The first node of each region makes the region's bridge: made one by one, so two
        // workers never both find a bridge missing.
        let mut regions = std::collections::BTreeSet::new();
        let (first, rest): (Vec<_>, Vec<_>) = to_make.into_iter().partition(|(_, n)| regions.insert(n.region.clone()));
        let seed_of = |i: usize| Seed::Merged(specs[i].user_data.as_deref());
        let mut made: Vec<(usize, Node, Result<(), ProviderError>)> = first
            .into_iter()
            .map(|(i, node)| {
                let r = self.make(&state, &node, seed_of(i));
                (i, node, r)
            })
            .collect();
        // With a boot window, each worker is one place in it: it makes a node, waits until
        // that machine answers, then takes the next (super::boot_window).
        let queue = std::sync::Mutex::new(rest.into_iter());
        let results = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for _ in 0..window.unwrap_or(BATCH_WORKERS) {
                scope.spawn(|| {
                    loop {
                        let Some((i, node)) = queue.lock().expect("queue").next() else { break };
                        let r = self.make(&state, &node, seed_of(i));
                        if window.is_some() && r.is_ok() && state.machines.contains(&node.name) {
                            boot_window::wait_booted(&node);
                        }
                        results.lock().expect("results").push((i, node, r));
                    }
                });
            }
        });
        made.extend(results.into_inner().expect("results"));
        for (_, node, r) in &made {
            if r.is_ok() {
                let status = Self::made_status(&state, node);
                set_status(&mut state, &node.name, status);
            }
        }
        let saved = self.save(&state);
        for (i, node, r) in made {
            outcomes[i] = Some(match (r, &saved) {
                (Err(e), _) => Err(e),
                (Ok(()), Err(e)) => Err(clone_error(e)),
                (Ok(()), Ok(())) => Self::find(&state, &node.name).map(|n| Self::node_view(&state, n)),
            });
        }
        outcomes.into_iter().map(|o| o.expect("every outcome is known")).collect()
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
        // ssh runs in the namespace by setns(2) between fork and exec, on a namespace file
        // held open here: not through `ip netns exec` (a process more per machine, and a
        // mount namespace with /sys mounted again for each).
        let ns_file = match &netns {
            Some(ns) => {
                let path = std::path::Path::new("/run/netns").join(ns);
                Some(
                    std::fs::File::open(&path)
                        .map_err(|error| ProviderError::Io { what: path.display().to_string(), error })?,
                )
            }
            None => None,
        };
        let ns_fd = ns_file.as_ref().map(std::os::fd::AsRawFd::as_raw_fd);
        let argv = probe_argv(&ssh, port, &user, &host, classical_first());
        let run = |remote: &str| {
            let mut cmd = tokio::process::Command::new("ssh");
            cmd.args(&argv).arg(remote).stdin(std::process::Stdio::null()).kill_on_drop(true);
            if let Some(fd) = ns_fd {
                // SAFETY: between fork and exec only setns(2), async-signal-safe, on a file
                // descriptor `ns_file` keeps open for as long as `run` is called.
                unsafe {
                    cmd.pre_exec(move || {
                        if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                        Ok(())
                    });
                }
            }
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
        self.ready.lock().unwrap_or_else(|e| e.into_inner()).push(node.name.clone());
        self.blocking(move |cloud| {
            let (_lock, mut state) = cloud.begin()?;
            Self::find(&state, &node.name)?;
            // This machine, and every other this process saw ready meanwhile, in one save.
            let mut ready = std::mem::take(&mut *cloud.ready.lock().unwrap_or_else(|e| e.into_inner()));
            ready.push(node.name.clone());
            let mut changed = false;
            for name in &ready {
                if Self::find(&state, name).is_ok_and(|n| n.status == Status::Booting) {
                    set_status(&mut state, name, Status::Running);
                    changed = true;
                }
            }
            if changed {
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

/// The same error again, for each node a batch could not make for one reason: its kind
/// kept where it is plain data, else its message.
fn clone_error(e: &ProviderError) -> ProviderError {
    match e {
        ProviderError::NoSuchNode(n) => ProviderError::NoSuchNode(n.clone()),
        ProviderError::NoSuchVolume(n) => ProviderError::NoSuchVolume(n.clone()),
        ProviderError::Unsupported(s) => ProviderError::Unsupported(s.clone()),
        ProviderError::NotRoot => ProviderError::NotRoot,
        ProviderError::Api(s) => ProviderError::Api(s.clone()),
        ProviderError::Command { command, stderr } => {
            ProviderError::Command { command: command.clone(), stderr: stderr.clone() }
        }
        ProviderError::Io { what, error } => {
            ProviderError::Io { what: what.clone(), error: std::io::Error::new(error.kind(), error.to_string()) }
        }
        other => ProviderError::Invalid(other.to_string()),
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

/// The readiness probe's `ssh` arguments up to the remote command: lct's client options
/// (pinned host key, lct's identity), then, where the controller's OpenSSH defaults to
/// sntrup761x25519 (9.0-9.8), a preference for curve25519: that key exchange makes a
/// post-quantum key pair per connection, about 65 ms of CPU in OpenSSH's portable code (8 %
/// of all the CPU of 100 machines booting at once, measured with perf), and the probe carries
/// nothing secret (docs/security.md 65). An OpenSSH with ML-KEM (9.9 on) keeps its default,
/// post-quantum and cheap. The hooks' sessions keep the default everywhere; a node that offers
/// no curve25519 still gets one of the defaults that follow the head.
fn probe_argv(ssh: &lct_core::ssh::SshFiles, port: u16, user: &str, host: &str, classical_first: bool) -> Vec<String> {
    let mut argv: Vec<String> = Vec::new();
    for o in ssh.client_options() {
        argv.extend(["-o".into(), o]);
    }
    if classical_first {
        argv.extend(["-o".into(), CLASSICAL_FIRST.into()]);
    }
    argv.extend(["-o", "ConnectTimeout=5", "-p", &port.to_string(), "-l", user, host].map(String::from));
    argv
}

/// The probe's key exchange preference: curve25519 at the head of OpenSSH's default list.
const CLASSICAL_FIRST: &str = "KexAlgorithms=^curve25519-sha256,curve25519-sha256@libssh.org";

/// Whether the controller's `ssh` lacks ML-KEM (`ssh -Q kex`), so that its default key
/// exchange is sntrup761x25519's costly one: asked once per process. An `ssh` that cannot
/// say keeps its default.
fn classical_first() -> bool {
    static ANSWER: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ANSWER.get_or_init(|| {
        std::process::Command::new("ssh")
            .args(["-Q", "kex"])
            .stdin(std::process::Stdio::null())
            .output()
            .is_ok_and(|out| out.status.success() && !String::from_utf8_lossy(&out.stdout).contains("mlkem"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What this machine's OpenSSH makes of the arguments (-G: the configuration, no
    /// connection): its key exchange list.
    fn kex_of(argv: &[String]) -> (Vec<String>, String) {
        let out = std::process::Command::new("ssh").arg("-G").args(argv).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let config = String::from_utf8_lossy(&out.stdout).to_string();
        let kex = config.lines().find_map(|l| l.strip_prefix("kexalgorithms ")).expect("kexalgorithms");
        (kex.split(',').map(String::from).collect(), config)
    }

    #[test]
    fn the_probe_puts_curve25519_first_and_keeps_the_defaults_and_the_pinning() {
        let dir = tempfile::tempdir().unwrap();
        let ssh = lct_core::ssh::SshFiles::new(dir.path());
        let argv = probe_argv(&ssh, 2222, "root", "203.0.113.7", true);
        assert!(argv.contains(&"StrictHostKeyChecking=yes".to_string()), "{argv:?}");
        assert_eq!(argv[argv.len() - 5..], ["-p", "2222", "-l", "root", "203.0.113.7"]);
        let (kex, config) = kex_of(&argv);
        let head = ["curve25519-sha256", "curve25519-sha256@libssh.org"];
        assert_eq!(kex[..2], head, "{kex:?}");
        assert!(config.lines().any(|l| l == "stricthostkeychecking true"), "{config}");
        // The rest is the default list as it was, in its order: nothing dropped.
        let plain = probe_argv(&ssh, 2222, "root", "203.0.113.7", false);
        assert!(!plain.iter().any(|a| a.starts_with("KexAlgorithms")), "{plain:?}");
        let (defaults, _) = kex_of(&plain);
        let rest: Vec<&String> = defaults.iter().filter(|k| !head.contains(&k.as_str())).collect();
        assert_eq!(kex[2..].iter().collect::<Vec<_>>(), rest);
        // Asked of this machine's OpenSSH: only one without ML-KEM gets the preference.
        let offered = std::process::Command::new("ssh").args(["-Q", "kex"]).output().unwrap();
        assert_eq!(classical_first(), !String::from_utf8_lossy(&offered.stdout).contains("mlkem"));
    }
}
