//! Machine nodes: a node that is a Debian machine, not just a network namespace.
//!
//! A machine is a systemd-nspawn container booting systemd inside the node's network
//! namespace, its root an overlay over a base root file system built once (mmdebstrap from
//! Debian's packages, cached under `LCT_IMAGE_DIR`, by default `STATE/local/images`, and
//! rebuilt when its package list changes). Before the first boot lct writes the node's host
//! name, its SSH host key, the authorized keys and a cloud-init NoCloud seed into the
//! overlay; the machine's sshd takes keys only. The lab's package mirror is bind-mounted
//! read-only, the only apt source a machine has: no machine has a route out.
//!
//! The container runs detached (its own session), with no systemd needed on the host
//! (`--register=no --keep-unit`), under a supervisor that boots it again when it reboots
//! itself (see [`super::reboot`]); its pid is kept beside the overlay, so any later run can
//! stop it, and a crash half-way is repaired by booting what should run.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lct_core::fsutil::{Lock, atomic_write};
use lct_core::record::Node;

use super::net;
use crate::ProviderError;
use crate::cloudinit::FirstBoot;

/// What a node is, from the image asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeImage {
    /// A network namespace over this machine's file system (light, for scale).
    Netns,
    /// A Debian 12 machine: systemd, sshd, apt, cloud-init.
    Debian12,
}

impl NodeImage {
    /// `None` or `lct/netns`: a namespace; `debian-12` (or Linode's `linode/debian12`): a
    /// machine.
    pub fn parse(image: Option<&str>) -> Result<NodeImage, ProviderError> {
        match image {
            None | Some("lct/netns") => Ok(NodeImage::Netns),
            Some("debian-12" | "linode/debian12") => Ok(NodeImage::Debian12),
            Some(other) => Err(ProviderError::Invalid(format!(
                "field image: the local cloud has lct/netns and debian-12 (linode/debian12), not {other:?}"
            ))),
        }
    }
}

/// The packages of the base root: a booting systemd, sshd, cloud-init, python3 (for
/// Ansible) and the libraries lct's node-side programs need. What a plan installs comes
/// later, from the mirror.
pub const BASE_PACKAGES: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "cloud-init",
    "python3",
    "iproute2",
    "netbase",
    "ca-certificates",
    "procps",
    "sudo",
    "less",
    // What lct's node-side programs link to (lct-fw: nf_tables over netlink) and run
    // (lct-fw ends removed peers' connections with conntrack).
    "libnftnl11",
    "libmnl0",
    "conntrack",
    // nft, as Linode's Debian has it: the first boot's guard of the metadata service
    // (lct_api::cloudinit) runs it before lct-fw is on the node.
    "nftables",
];

/// inotify instances a booted machine holds (systemd, journald, logind, dbus, ...: 7
/// measured), all counted against root's per-user limit, since every machine runs as root of
/// the host's user namespace.
const INOTIFY_PER_MACHINE: u64 = 8;

/// Refuses to boot `machines` machines where the kernel's inotify limit cannot hold them:
/// past it, a machine's systemd cannot watch its units and its sshd never starts, which
/// would otherwise show only as a machine that never answers.
pub fn check_inotify(machines: usize) -> Result<(), ProviderError> {
    let path = "/proc/sys/fs/inotify/max_user_instances";
    let Some(limit) = fs::read_to_string(path).ok().and_then(|s| s.trim().parse::<u64>().ok()) else {
        return Ok(());
    };
    inotify_fits(machines, limit)
}

fn inotify_fits(machines: usize, limit: u64) -> Result<(), ProviderError> {
    // Room for the host's own watchers too.
    let need = machines as u64 * INOTIFY_PER_MACHINE + 16;
    if need > limit {
        return Err(ProviderError::Invalid(format!(
            "{machines} machines need about {need} inotify instances and fs.inotify.max_user_instances is {limit}: \
             raise it (scripts/setup does: sysctl -w fs.inotify.max_user_instances=1024, kept in /etc/sysctl.d/60-lct.conf)"
        )));
    }
    Ok(())
}

/// Debian's archive, as the machine's own apt configuration names it.
const ARCHIVE: &str = "http://deb.debian.org/debian";
const SUITE: &str = "bookworm";
/// Where the lab's package mirror appears inside a machine.
pub const MIRROR_IN_MACHINE: &str = "/var/lib/lct-mirror";

/// The base images and the package mirror, shared by every lab of a machine.
#[derive(Debug, Clone)]
pub struct Images {
    dir: PathBuf,
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> ProviderError + '_ {
    move |error| ProviderError::Io { what: path.display().to_string(), error }
}

impl Images {
    /// `LCT_IMAGE_DIR`, else `local_dir/images`.
    pub fn new(local_dir: &Path) -> Images {
        let dir = std::env::var_os("LCT_IMAGE_DIR")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| local_dir.join("images"));
        Images { dir }
    }

    fn base_dir(&self) -> PathBuf {
        self.dir.join("debian-12")
    }

    /// The package mirror: `.deb` files and their index, an apt repository.
    pub fn mirror(&self) -> PathBuf {
        self.dir.join("mirror")
    }

    /// The base root, built first if missing or made from another package list.
    pub fn base(&self) -> Result<PathBuf, ProviderError> {
        let dir = self.base_dir();
        let root = dir.join("root");
        let manifest = dir.join("manifest.json");
        let wanted = manifest_text();
        if fs::read_to_string(&manifest).is_ok_and(|m| m == wanted) && root.is_dir() {
            return Ok(root);
        }
        fs::create_dir_all(&dir).map_err(io_at(&dir))?;
        let lock_path = dir.join("lock");
        let _lock = Lock::acquire(&lock_path).map_err(io_at(&lock_path))?;
        // Another process may have built it while this one waited.
        if fs::read_to_string(&manifest).is_ok_and(|m| m == wanted) && root.is_dir() {
            return Ok(root);
        }
        let started = Instant::now();
        eprintln!("lct-api: building the debian-12 base root (once; about a minute)");
        let building = dir.join("root.building");
        let _ = fs::remove_dir_all(&building);
        fs::create_dir_all(&building).map_err(io_at(&building))?;
        let mut args: Vec<String> =
            vec!["--variant=apt".into(), "--quiet".into(), format!("--include={}", BASE_PACKAGES.join(","))];
        for hook in customize_hooks() {
            args.push(format!("--customize-hook={hook}"));
        }
        args.extend([SUITE.into(), building.display().to_string(), ARCHIVE.into()]);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        net::run("mmdebstrap", &refs)?;
        let _ = fs::remove_dir_all(&root);
        fs::rename(&building, &root).map_err(io_at(&root))?;
        atomic_write(&manifest, wanted.as_bytes(), 0o644).map_err(io_at(&manifest))?;
        tracing::info!("base root built in {:.1} s", started.elapsed().as_secs_f64());
        self.ensure_mirror()?;
        Ok(root)
    }

    /// An empty mirror is still a valid repository (an empty index).
    pub fn ensure_mirror(&self) -> Result<(), ProviderError> {
        let mirror = self.mirror();
        fs::create_dir_all(mirror.join("pool")).map_err(io_at(&mirror))?;
        let index = mirror.join("Packages");
        if !index.exists() {
            atomic_write(&index, b"", 0o644).map_err(io_at(&index))?;
        }
        Ok(())
    }
}

/// The lab's package mirror: Debian packages the host downloads (with whatever they need
/// beyond the base root), indexed as an apt repository that every machine reads from its
/// read-only bind mount. The host's own apt configuration is read (its proxy, if any), never
/// changed: the download has its own source list, lists, cache and dpkg status (the base
/// root's, so only what a machine lacks is fetched).
impl Images {
    /// Downloads `packages` and what they depend on into the mirror and re-indexes it;
    /// returns the .deb files added.
    pub fn add_packages(&self, packages: &[String]) -> Result<Vec<String>, ProviderError> {
        for p in packages {
            lct_core::debian::check_package(p).map_err(|e| ProviderError::Invalid(e.to_string()))?;
        }
        let base = self.base()?;
        self.ensure_mirror()?;
        let mirror = self.mirror();
        let lock_path = mirror.join("lock");
        let _lock = Lock::acquire(&lock_path).map_err(io_at(&lock_path))?;
        let apt = mirror.join("apt");
        let empty = apt.join("empty");
        for d in [apt.join("lists/partial"), apt.join("cache/archives/partial"), empty.clone()] {
            fs::create_dir_all(&d).map_err(io_at(&d))?;
        }
        let sources = apt.join("sources.list");
        let keyring = "/usr/share/keyrings/debian-archive-keyring.gpg";
        atomic_write(&sources, format!("deb [signed-by={keyring}] {ARCHIVE} {SUITE} main\n").as_bytes(), 0o644)
            .map_err(io_at(&sources))?;
        let options = [
            format!("Dir::Etc::SourceList={}", sources.display()),
            format!("Dir::Etc::SourceParts={}", empty.display()),
            format!("Dir::Etc::Preferences={}/none", empty.display()),
            format!("Dir::Etc::PreferencesParts={}", empty.display()),
            format!("Dir::State::Lists={}", apt.join("lists").display()),
            format!("Dir::State::status={}", base.join("var/lib/dpkg/status").display()),
            format!("Dir::Cache={}", apt.join("cache").display()),
            format!("Dir::Cache::archives={}", apt.join("cache/archives").display()),
            "Debug::NoLocking=1".to_string(),
            "APT::Architecture=amd64".to_string(),
        ];
        let apt_get = |extra: &[&str]| -> Result<String, ProviderError> {
            let mut args: Vec<&str> = vec!["-q"];
            for o in &options {
                args.extend(["-o", o]);
            }
            args.extend_from_slice(extra);
            net::run("apt-get", &args)
        };
        apt_get(&["update"])?;
        // --reinstall: a package named here is fetched even when the base root has it (a
        // machine may have removed it); what it depends on only when the base lacks it.
        // `--`: what follows is packages only (each checked above, none starts with `-`).
        let mut install: Vec<&str> = vec!["install", "--download-only", "--reinstall", "--yes", "--"];
        install.extend(packages.iter().map(String::as_str));
        apt_get(&install)?;
        let pool = mirror.join("pool");
        let mut added = Vec::new();
        let archives = apt.join("cache/archives");
        for entry in fs::read_dir(&archives).map_err(io_at(&archives))?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".deb") && !pool.join(&name).exists() {
                fs::rename(entry.path(), pool.join(&name)).map_err(io_at(&pool))?;
                added.push(name);
            }
        }
        // The index, replaced whole: apt in a machine sees the old one or the new one.
        let index = net::run_in(&mirror, "dpkg-scanpackages", &["--multiversion", "pool", "/dev/null"])?;
        let packages_file = mirror.join("Packages");
        atomic_write(&packages_file, index.as_bytes(), 0o644).map_err(io_at(&packages_file))?;
        added.sort();
        Ok(added)
    }

    /// The packages the mirror holds: `NAME VERSION` lines.
    pub fn mirror_packages(&self) -> Result<Vec<(String, String)>, ProviderError> {
        let index = self.mirror().join("Packages");
        let text = match fs::read_to_string(&index) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io_at(&index)(e)),
        };
        let mut out = Vec::new();
        let mut name = None;
        for line in text.lines() {
            if let Some(n) = line.strip_prefix("Package: ") {
                name = Some(n.to_string());
            } else if let (Some(v), Some(n)) = (line.strip_prefix("Version: "), name.take()) {
                out.push((n, v.to_string()));
            }
        }
        out.sort();
        Ok(out)
    }
}

/// What the base root is made from: a rebuild when it changes.
fn manifest_text() -> String {
    let hooks: Vec<String> = customize_hooks();
    serde_json::to_string_pretty(&serde_json::json!({
        "suite": SUITE,
        "archive": ARCHIVE,
        "packages": BASE_PACKAGES,
        "customize": hooks,
    }))
    .expect("json")
        + "\n"
}

/// cloud-init's boot, its four stages in one process: `init --local`, `init` (the ssh module
/// writes the host keys: then sshd may start), `modules --mode=config`, `modules
/// --mode=final`. Each is Debian's cloud-init CLI as its own unit runs it; status.json and
/// `cloud-init status --wait` work as with the four units.
const CLOUD_INIT_BOOT: &str = r#"#!/usr/bin/python3
"""cloud-init's four boot stages in one process (lct's local machines)."""
import os
import socket
import sys

os.environ.setdefault("TZ", ":/etc/localtime")
import yaml
from cloudinit import safeyaml
from cloudinit.cmd import main as cli


class _CSafeLoader(yaml.CSafeLoader):
    """cloud-init's YAML loader on libyaml: the same documents, parsed in C (cloud-init
    reads its configuration a dozen times in a boot)."""


_CSafeLoader.add_constructor("tag:yaml.org,2002:python/unicode", yaml.CSafeLoader.construct_scalar)
safeyaml._CustomSafeLoader = _CSafeLoader


def ready():
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    if path.startswith("@"):
        path = "\0" + path[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.connect(path)
        s.sendall(b"READY=1")


failed = False
for stage in (["init", "--local"], ["init"]):
    failed |= bool(cli.main(["cloud-init", *stage]))
ready()
for stage in (["modules", "--mode=config"], ["modules", "--mode=final"]):
    failed |= bool(cli.main(["cloud-init", *stage]))
sys.exit(1 if failed else 0)
"#;

/// The unit that runs [`CLOUD_INIT_BOOT`] in place of cloud-init's four (masked).
const CLOUD_INIT_UNIT: &str = "[Unit]
Description=cloud-init, its four stages in one process (lct)
DefaultDependencies=no
After=local-fs.target systemd-remount-fs.service systemd-tmpfiles-setup.service
Before=ssh.service systemd-user-sessions.service shutdown.target
Conflicts=shutdown.target

[Service]
Type=notify
ExecStart=/usr/bin/python3 /usr/local/lib/lct/cloud-init-boot
RemainAfterExit=yes
TimeoutSec=0
KillMode=process
TasksMax=infinity
StandardOutput=journal+console

[Install]
WantedBy=multi-user.target
";

/// Shell run by mmdebstrap on the finished root (`$1`): no host keys or machine id of its
/// own (each machine gets its own), keys-only sshd, no network configuration inside (the lab
/// sets addresses from outside), cloud-init from its NoCloud seed only, and apt pointed at
/// the lab's mirror only.
fn customize_hooks() -> Vec<String> {
    vec![
        r#"rm -f "$1"/etc/ssh/ssh_host_* && : > "$1/etc/machine-id" && rm -f "$1/var/lib/dbus/machine-id""#.into(),
        r#"printf 'PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nUseDNS no\n' > "$1/etc/ssh/sshd_config.d/lct.conf""#.into(),
        // Also where Debian's cloud-init writes `ssh_pwauth: false`: found already set, it does
        // not restart sshd in the middle of the first boot.
        r#"printf 'PasswordAuthentication no\n' > "$1/etc/ssh/sshd_config.d/50-cloud-init.conf" && chmod 600 "$1/etc/ssh/sshd_config.d/50-cloud-init.conf""#.into(),
        // The locale lct's user-data asks for, already set: no update-locale at first boot.
        r#"printf '#  File generated by update-locale\nLANG=C.UTF-8\n' > "$1/etc/default/locale""#.into(),
        r#"ln -sf /dev/null "$1/etc/systemd/system/networking.service" && ln -sf /dev/null "$1/etc/systemd/system/systemd-networkd-wait-online.service""#.into(),
        // cloud-init from the NoCloud seed only, no network configuration, and the modules
        // lct's first boot and common user-data use (each module costs every machine's
        // boot, so the lists are short).
        concat!(
            r#"printf '%s\n' 'datasource_list: [ NoCloud, None ]' 'network: {config: disabled}' "#,
            r#"'cloud_init_modules: [seed_random, bootcmd, write_files, set_hostname, update_hostname, update_etc_hosts, users_groups, ssh]' "#,
            r#"'cloud_config_modules: [locale, set_passwords, runcmd]' "#,
            r#"'cloud_final_modules: [package_update_upgrade_install, write_files_deferred, scripts_per_once, scripts_per_boot, scripts_per_instance, scripts_user, final_message]' "#,
            // Output appended by cloud-init itself, not through two `tee` processes a stage.
            r#""output: {all: '>> /var/log/cloud-init-output.log'}" "#,
            r#"> "$1/etc/cloud/cloud.cfg.d/90-lct.cfg""#
        )
        .into(),
        // cloud-init's four stages in one Python process (its own CLI, called as the four
        // units call it): starting Python and importing cloud-init was most of a boot's CPU,
        // four times over. sshd starts once the init stages have written the host keys.
        format!(
            "mkdir -p \"$1/usr/local/lib/lct\" && cat > \"$1/usr/local/lib/lct/cloud-init-boot\" <<'LCT_EOF'\n{CLOUD_INIT_BOOT}LCT_EOF\n\
             cat > \"$1/etc/systemd/system/lct-cloud-init.service\" <<'LCT_EOF'\n{CLOUD_INIT_UNIT}LCT_EOF\n\
             for u in cloud-init-local cloud-init cloud-config cloud-final; do ln -sf /dev/null \"$1/etc/systemd/system/$u.service\"; done && \
             mkdir -p \"$1/etc/systemd/system/multi-user.target.wants\" && \
             ln -sf /etc/systemd/system/lct-cloud-init.service \"$1/etc/systemd/system/multi-user.target.wants/lct-cloud-init.service\""
        ),
        // Units a container has no use for (timers, consoles): less to start at every boot.
        r#"for u in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer man-db.timer console-getty.service getty@.service systemd-networkd-wait-online.service; do ln -sf /dev/null "$1/etc/systemd/system/$u"; done"#.into(),
        r#"rm -f "$1/etc/apt/sources.list" "$1"/etc/apt/sources.list.d/* && echo "deb [trusted=yes] file:/var/lib/lct-mirror ./" > "$1/etc/apt/sources.list.d/lct-mirror.list""#.into(),
        r#"passwd --root "$1" --lock root >/dev/null"#.into(),
    ]
}

/// One machine: its overlay and its container.
#[derive(Debug, Clone)]
pub struct Machine {
    /// `STATE/local/machines/NODE`.
    dir: PathBuf,
    /// The container's name (the node's namespace name, unique per lab).
    name: String,
    /// The node's network namespace.
    netns: String,
    /// The lab it belongs to (for its supervisor's repair after a reboot).
    lab: String,
}

impl Machine {
    pub fn new(local_dir: &Path, node: &Node, netns: &str, lab: &str) -> Machine {
        Machine {
            dir: local_dir.join("machines").join(node.name.as_str()),
            name: netns.to_string(),
            netns: netns.to_string(),
            lab: lab.to_string(),
        }
    }

    /// The machines whose directories are under `STATE/local/machines`, known to the state or
    /// not (a state file lost or restored from an older copy): what `lab down` sweeps.
    pub fn all_on_disk(local_dir: &Path) -> Vec<Machine> {
        let Ok(dirs) = fs::read_dir(local_dir.join("machines")) else { return Vec::new() };
        dirs.flatten()
            .filter(|d| d.file_type().is_ok_and(|t| t.is_dir()))
            .map(|d| {
                let name = d.file_name().to_string_lossy().into_owned();
                Machine { dir: d.path(), name: name.clone(), netns: name, lab: String::new() }
            })
            .collect()
    }

    /// `STATE/local/machines/NODE`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn root(&self) -> PathBuf {
        self.dir.join("root")
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.join("pid")
    }

    /// Whether the overlay is mounted on the machine's root.
    fn mounted(&self) -> bool {
        let root = self.root();
        fs::read_to_string("/proc/self/mountinfo")
            .is_ok_and(|m| m.lines().any(|l| l.split(' ').nth(4) == Some(root.to_str().unwrap_or_default())))
    }

    /// Mounts the overlay (base root below, the machine's own changes above).
    fn mount(&self, base: &Path) -> Result<(), ProviderError> {
        if self.mounted() {
            return Ok(());
        }
        for d in ["upper", "work", "root"] {
            let p = self.dir.join(d);
            fs::create_dir_all(&p).map_err(io_at(&p))?;
        }
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            base.display(),
            self.dir.join("upper").display(),
            self.dir.join("work").display()
        );
        net::run("mount", &["-t", "overlay", "overlay", "-o", &options, &self.root().to_string_lossy()])?;
        Ok(())
    }

    /// Whether this machine has been set up before (its first-boot files are written once).
    pub fn prepared(&self) -> bool {
        self.dir.join("prepared").exists()
    }

    /// Writes what the machine boots with the first time: host name, hosts file, host key,
    /// authorized keys and the cloud-init seed.
    fn prepare(&self, node: &Node, boot: &FirstBoot) -> Result<(), ProviderError> {
        let root = self.root();
        let write = |rel: &str, text: &str, mode: u32| -> Result<(), ProviderError> {
            let path = root.join(rel.trim_start_matches('/'));
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir).map_err(io_at(dir))?;
            }
            atomic_write(&path, text.as_bytes(), mode).map_err(io_at(&path))?;
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).map_err(io_at(&path))
        };
        write("/etc/hostname", &format!("{}\n", node.name), 0o644)?;
        let mut hosts = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
        if let Some(a) = node.private_ipv4.first() {
            hosts.push_str(&format!("{a}\t{}\n", node.name));
        }
        write("/etc/hosts", &hosts, 0o644)?;
        write(
            "/etc/resolv.conf",
            "# lct local cloud: no resolver until lct-dns serves the lab\nnameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
            0o644,
        )?;
        write("/etc/machine-id", &format!("{}\n", lct_core::random::hex(16)?), 0o444)?;
        write("/etc/ssh/ssh_host_ed25519_key", &boot.host_key.private, 0o600)?;
        write("/etc/ssh/ssh_host_ed25519_key.pub", &format!("{}\n", boot.host_key.public), 0o644)?;
        let ssh_dir = root.join("root/.ssh");
        fs::create_dir_all(&ssh_dir).map_err(io_at(&ssh_dir))?;
        fs::set_permissions(&ssh_dir, fs::Permissions::from_mode(0o700)).map_err(io_at(&ssh_dir))?;
        write("/root/.ssh/authorized_keys", &(boot.authorized_keys.join("\n") + "\n"), 0o600)?;
        let instance = format!("lct-{}-{}", node.name, node.provider_id);
        write("/var/lib/cloud/seed/nocloud/meta-data", &boot.meta_data(&instance), 0o600)?;
        write("/var/lib/cloud/seed/nocloud/user-data", &boot.user_data(), 0o600)?;
        let done = self.dir.join("prepared");
        atomic_write(&done, b"", 0o644).map_err(io_at(&done))
    }

    /// The container's pid, if it runs.
    pub fn pid(&self) -> Option<i32> {
        let pid: i32 = fs::read_to_string(self.pid_file()).ok()?.trim().parse().ok()?;
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // A zombie (its parent gone and nobody reaping) has stopped.
        let zombie = stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z'));
        let ours = String::from_utf8_lossy(&cmdline).contains(&format!("--directory={}", self.root().display()));
        (ours && !zombie).then_some(pid)
    }

    /// Everything a running machine needs: the base root, the overlay, the first-boot files
    /// (once) and the container; with `up` false, the container is stopped.
    pub fn ensure(
        &self,
        images: &Images,
        node: &Node,
        boot: impl FnOnce() -> Result<FirstBoot, ProviderError>,
        up: bool,
    ) -> Result<(), ProviderError> {
        if !up {
            return self.stop();
        }
        let base = images.base()?;
        images.ensure_mirror()?;
        self.mount(&base)?;
        if !self.prepared() {
            self.prepare(node, &boot()?)?;
        }
        if self.pid().is_none() {
            self.boot(&images.mirror())?;
        }
        Ok(())
    }

    /// Starts the container under its supervisor, detached: its console in `console.log`.
    fn boot(&self, mirror: &Path) -> Result<(), ProviderError> {
        let log_path = self.dir.join("console.log");
        let log = fs::File::create(&log_path).map_err(io_at(&log_path))?;
        let args: Vec<String> = vec![
            "--quiet".into(),
            "--boot".into(),
            format!("--directory={}", self.root().display()),
            format!("--machine={}", self.name),
            "--register=no".into(),
            "--keep-unit".into(),
            format!("--network-namespace-path=/run/netns/{}", self.netns),
            // The node's own network namespace is the machine's: its firewall is its own to
            // set, as on a Linode (nspawn keeps CAP_NET_ADMIN only for networks it makes).
            "--capability=CAP_NET_ADMIN".into(),
            "--console=passive".into(),
            "--resolv-conf=off".into(),
            "--timezone=off".into(),
            "--link-journal=no".into(),
            format!("--bind-ro={}:{MIRROR_IN_MACHINE}", mirror.display()),
        ];
        let state_dir = self.dir.parent().and_then(Path::parent).and_then(Path::parent).unwrap_or(Path::new("."));
        let supervised =
            super::reboot::Supervised { state_dir, lab: &self.lab, pid_file: &self.pid_file(), nspawn_args: &args };
        super::reboot::start(&supervised, log, || self.pid().is_some())
    }

    /// Powers the machine off (systemd's orderly shutdown), killing it after 30 s.
    pub fn stop(&self) -> Result<(), ProviderError> {
        let Some(pid) = self.pid() else { return Ok(()) };
        // SAFETY: plain kill(2) on the container's pid, checked to be ours above.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.pid().is_some() {
            if Instant::now() > deadline {
                tracing::warn!(machine = %self.name, "no orderly shutdown in 30 s: killing it");
                unsafe { libc::kill(pid, libc::SIGKILL) };
                std::thread::sleep(Duration::from_millis(200));
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = fs::remove_file(self.pid_file());
        Ok(())
    }

    /// Stops the machine and removes its overlay and files: nothing of it stays.
    pub fn remove(&self) -> Result<(), ProviderError> {
        self.stop()?;
        if self.mounted() {
            let root = self.root().display().to_string();
            if net::run("umount", &[&root]).is_err() {
                net::run("umount", &["--lazy", &root])?;
            }
        }
        match fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(ProviderError::Io { what: self.dir.display().to_string(), error }),
        }
    }
}

/// Where a volume appears inside a machine: Linode's path, so what runs on a node finds its
/// volumes at the same place on both providers.
pub fn volume_path_in_machine(label: &str) -> String {
    format!("/dev/disk/by-id/scsi-0Linode_Volume_{label}")
}

impl Machine {
    /// The container's init (the nspawn process's child), whose mount namespace is the
    /// machine's.
    fn init_pid(&self) -> Option<i32> {
        let pid = self.pid()?;
        let children = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
        let child: i32 = children.split_whitespace().next()?.parse().ok()?;
        // Right after the spawn, nspawn's own helper stands there before the container's
        // init (systemd) does.
        let comm = fs::read_to_string(format!("/proc/{child}/comm")).ok()?;
        (comm.trim() == "systemd").then_some(child)
    }

    /// Makes the block device `device` (a loop device of the host) appear in the running
    /// machine as volume `label`; nothing when the machine does not run (it gets its volumes
    /// at boot).
    pub fn add_volume(&self, label: &str, device: &Path) -> Result<(), ProviderError> {
        let Some(init) = self.wait_init() else { return Ok(()) };
        use std::os::unix::fs::MetadataExt;
        let meta = fs::metadata(device).map_err(io_at(device))?;
        let (major, minor) = (libc::major(meta.rdev()), libc::minor(meta.rdev()));
        let path = volume_path_in_machine(label);
        let script = format!("mkdir -p /dev/disk/by-id && rm -f {path} && mknod {path} b {major} {minor}");
        net::run("nsenter", &["--target", &init.to_string(), "--mount", "--", "sh", "-c", &script])?;
        Ok(())
    }

    /// Removes volume `label`'s device from the running machine.
    pub fn remove_volume(&self, label: &str) -> Result<(), ProviderError> {
        let Some(init) = self.init_pid() else { return Ok(()) };
        let path = volume_path_in_machine(label);
        net::run("nsenter", &["--target", &init.to_string(), "--mount", "--", "rm", "-f", &path])?;
        Ok(())
    }

    /// The init of a machine that runs, once it exists (just after boot it may not yet).
    fn wait_init(&self) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            self.pid()?;
            if let Some(init) = self.init_pid() {
                return Some(init);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[cfg(test)]
mod inotify_tests {
    #[test]
    fn machines_beyond_the_inotify_limit_are_refused_naming_the_setting() {
        assert!(super::inotify_fits(14, 128).is_ok());
        let e = super::inotify_fits(20, 128).unwrap_err().to_string();
        assert!(e.contains("fs.inotify.max_user_instances is 128") && e.contains("sysctl -w"), "{e}");
        assert!(super::inotify_fits(100, 1024).is_ok());
    }
}
