//! The base root file system machines boot (built once with mmdebstrap, rebuilt when its
//! package list changes) and the lab's package mirror, the only apt source a machine has.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Instant;

use lct_core::fsutil::{Lock, atomic_write};

use super::net;
use crate::ProviderError;

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

pub(super) fn io_at(path: &Path) -> impl FnOnce(io::Error) -> ProviderError + '_ {
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

    /// The images at `dir` (a test's shared image directory), whatever `LCT_IMAGE_DIR` says.
    pub fn at(dir: &Path) -> Images {
        Images { dir: dir.to_path_buf() }
    }

    /// `IMAGES`: the base root, the lct images machines are made from, the mirror.
    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(super) fn base_dir(&self) -> PathBuf {
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
        // The index, replaced whole: apt in a machine sees the old one or the new one. Nothing
        // added and every .deb of the pool in the index: it stands (re-indexing reads every
        // .deb, which a create of nodes that need nothing from the mirror must not do; a pool
        // changed after the index, by a run that stopped before its index, is indexed).
        let packages_file = mirror.join("Packages");
        if added.is_empty() && Self::pool_indexed(&pool, &packages_file) {
            return Ok(added);
        }
        let index = net::run_in(&mirror, "dpkg-scanpackages", &["--multiversion", "pool", "/dev/null"])?;
        atomic_write(&packages_file, index.as_bytes(), 0o644).map_err(io_at(&packages_file))?;
        added.sort();
        Ok(added)
    }

    /// Whether the index at `packages_file` was written after `pool` last changed (a .deb
    /// renamed in or out changes the directory's time): by the files' times alone, nothing is
    /// opened (the index is what machines read; a test counts who opens it).
    fn pool_indexed(pool: &Path, packages_file: &Path) -> bool {
        let modified = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
        matches!((modified(packages_file), modified(pool)), (Some(index), Some(pool)) if index >= pool)
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
pub(super) fn manifest_text() -> String {
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
