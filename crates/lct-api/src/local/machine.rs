//! Machine nodes: a node that is a Debian machine, not just a network namespace.
//!
//! A machine is a systemd-nspawn container booting systemd inside the node's network
//! namespace, its root an overlay over a base root file system built once (mmdebstrap from
//! Debian's packages, cached under `LCT_IMAGE_DIR`, by default `STATE/local/images`, and
//! rebuilt when its package list changes). Before the first boot lct writes the node's host
//! name, its SSH host key, the authorized keys and a cloud-init NoCloud seed into the
//! overlay (a machine from an lct image with no user-data boots without cloud-init, see
//! [`super::native_boot`]); the machine's sshd takes keys only. The lab's package mirror
//! is bind-mounted read-only, the only apt source a machine has: no machine has a route out.
//!
//! A machine can boot a disk instead (the Linode double's instance booting the raw disk its
//! profile names, an image streamed onto it): the disk's ext4 file system, checked by e2fsck,
//! is mounted read-write as its root, no overlay, and gets its first-boot files the same way.
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

use lct_core::fsutil::atomic_write;
use lct_core::record::Node;

use super::images::{Images, MIRROR_IN_MACHINE, io_at};
use super::{confined, generators, native_boot, net};
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

/// One machine: its overlay and its container.
#[derive(Debug, Clone)]
pub struct Machine {
    /// `STATE/local/machines/NODE`.
    dir: PathBuf,
    /// The container's name (the node's namespace name, unique per lab).
    name: String,
    /// The node's network namespace.
    netns: String,
    /// The lab it belongs to (for its supervisor's repair after a reboot, and its cgroups'
    /// names).
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
    /// not (a state file lost or restored from an older copy): what `lab down` sweeps. They
    /// belong to `lab`, the state directory's (one lab a state directory): their removal
    /// finds their cgroups by it.
    pub fn all_on_disk(local_dir: &Path, lab: &str) -> Vec<Machine> {
        let Ok(dirs) = fs::read_dir(local_dir.join("machines")) else { return Vec::new() };
        dirs.flatten()
            .filter(|d| d.file_type().is_ok_and(|t| t.is_dir()))
            .map(|d| {
                let name = d.file_name().to_string_lossy().into_owned();
                Machine { dir: d.path(), name: name.clone(), netns: name, lab: lab.to_string() }
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

    /// The merged root (what the machine sees as `/`).
    pub fn root_path(&self) -> PathBuf {
        self.root()
    }

    /// Where the machine's lower layer is named when it is not the base root.
    fn lower_file(&self) -> PathBuf {
        self.dir.join("lower")
    }

    /// Makes the machine's lower layer `root` (an lct image's, `IMAGES/lct/<id>/root`) in
    /// place of the base root: set before it is first mounted, kept for its life.
    pub fn set_lower(&self, root: &Path) -> Result<(), ProviderError> {
        fs::create_dir_all(&self.dir).map_err(io_at(&self.dir))?;
        let file = self.lower_file();
        atomic_write(&file, format!("{}\n", root.display()).as_bytes(), 0o644).map_err(io_at(&file))
    }

    /// The machine's lower layer: an lct image's root, else the base root.
    fn lower(&self, images: &Images) -> Result<PathBuf, ProviderError> {
        match fs::read_to_string(self.lower_file()) {
            Ok(text) => Ok(PathBuf::from(text.trim_end_matches('\n'))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => images.base(),
            Err(e) => Err(io_at(&self.lower_file())(e)),
        }
    }

    /// The disk of the lct image the machine was made from (`IMAGES/lct/<id>/disk.raw`
    /// beside its root), if it was made from one.
    pub fn golden_disk(&self) -> Option<PathBuf> {
        let lower = PathBuf::from(fs::read_to_string(self.lower_file()).ok()?.trim_end_matches('\n'));
        Some(lower.parent()?.join("disk.raw")).filter(|d| d.is_file())
    }

    /// Mounts the machine's overlay if it is not (a stopped machine's root, for capture).
    pub fn mount_root(&self, images: &Images) -> Result<(), ProviderError> {
        self.mount(&self.lower(images)?)
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

    /// Mounts the machine's root: its disk when it boots one (see [`Machine::set_root_disk`]),
    /// else the overlay (base root below, the machine's own changes above).
    fn mount(&self, base: &Path) -> Result<(), ProviderError> {
        if self.mounted() {
            return Ok(());
        }
        if let Some(disk) = self.root_disk() {
            return self.mount_disk(&disk);
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
        // mount(2) itself, not mount(8): a process per machine less, and no libmount reading
        // the whole mount table (each read takes the kernel's one mount-namespace lock, which
        // every booting machine's mounts contend for).
        let c = |s: &str| {
            std::ffi::CString::new(s).map_err(|_| {
                ProviderError::Invalid(format!("overlay of {}: a path with a NUL byte", self.dir.display()))
            })
        };
        let (source, target, kind, data) =
            (c("overlay")?, c(&self.root().to_string_lossy())?, c("overlay")?, c(&options)?);
        // SAFETY: mount(2) with NUL-terminated strings that outlive the call.
        if unsafe { libc::mount(source.as_ptr(), target.as_ptr(), kind.as_ptr(), 0, data.as_ptr().cast()) } != 0 {
            return Err(ProviderError::Io {
                what: format!("mounting the overlay {options} on {}", self.root().display()),
                error: std::io::Error::last_os_error(),
            });
        }
        Ok(())
    }

    /// Where the disk the machine boots is named, when it boots one.
    fn disk_file(&self) -> PathBuf {
        self.dir.join("disk")
    }

    /// The block device (or raw disk file) whose ext4 file system is the machine's root, in
    /// place of the overlay: a Linode double's instance booting the disk its profile names.
    pub fn root_disk(&self) -> Option<PathBuf> {
        let text = fs::read_to_string(self.disk_file()).ok()?;
        Some(PathBuf::from(text.trim_end_matches('\n'))).filter(|p| !p.as_os_str().is_empty())
    }

    /// Makes `disk` the machine's root from its next boot (the machine is stopped): the
    /// overlay is unmounted (kept on disk), and the next boot is a first boot (the node's host
    /// name, host key, keys and seed are written into the disk's file system). Whether the
    /// root changed: the same disk again is a plain reboot.
    pub fn set_root_disk(&self, disk: &Path) -> Result<bool, ProviderError> {
        if self.root_disk().as_deref() == Some(disk) {
            return Ok(false);
        }
        if self.pid().is_some() {
            return Err(ProviderError::Invalid(format!("machine {}: stop it before its root changes", self.name)));
        }
        self.unmount_root()?;
        fs::create_dir_all(&self.dir).map_err(io_at(&self.dir))?;
        let file = self.disk_file();
        atomic_write(&file, format!("{}\n", disk.display()).as_bytes(), 0o644).map_err(io_at(&file))?;
        match fs::remove_file(self.dir.join("prepared")) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_at(&self.dir)(e)),
            _ => Ok(true),
        }
    }

    /// Mounts the disk's ext4 file system on the machine's root, read-write (what the machine
    /// writes lands in the disk). Its contents came from someone else (an image streamed onto
    /// it): e2fsck checks it first (preen: a journal left by a killed machine is replayed),
    /// and anything it cannot fix safely is refused before the host's kernel mounts it.
    fn mount_disk(&self, disk: &Path) -> Result<(), ProviderError> {
        let root = self.root();
        fs::create_dir_all(&root).map_err(io_at(&root))?;
        let checked = std::process::Command::new("e2fsck")
            .args(["-p", "-f"])
            .arg(disk)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|error| ProviderError::Io { what: "e2fsck".into(), error })?;
        // 0: clean; 1: errors corrected. Anything else: not a file system to boot.
        if !matches!(checked.status.code(), Some(0 | 1)) {
            let why = String::from_utf8_lossy(&checked.stdout)
                .lines()
                .chain(String::from_utf8_lossy(&checked.stderr).lines())
                .take(4)
                .collect::<Vec<_>>()
                .join("; ");
            return Err(ProviderError::Invalid(format!(
                "machine {}: its disk {} is not a clean ext4 file system (e2fsck -p: {why})",
                self.name,
                disk.display()
            )));
        }
        let disk_s = disk.to_string_lossy();
        let root_s = root.to_string_lossy();
        // A raw disk file goes on a loop device of its own, freed by the unmount (autoclear).
        let options = if fs::metadata(disk).is_ok_and(|m| m.is_file()) { "loop" } else { "rw" };
        net::run("mount", &["-t", "ext4", "-o", options, &disk_s, &root_s])?;
        Ok(())
    }

    /// Unmounts the machine's root, if mounted (overlay or disk).
    fn unmount_root(&self) -> Result<(), ProviderError> {
        if self.mounted() {
            let root = self.root().display().to_string();
            if net::run("umount", &[&root]).is_err() {
                net::run("umount", &["--lazy", &root])?;
            }
        }
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
        // An image's tree is not trusted: every path is resolved inside the machine's root
        // (see super::confined), never through a symbolic link to the host.
        let write = |rel: &str, text: &str, mode: u32| -> Result<(), ProviderError> {
            let path = confined::file(&root, rel)?;
            atomic_write(&path, text.as_bytes(), mode).map_err(io_at(&path))?;
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).map_err(io_at(&path))
        };
        // A machine from an image is a new instance whatever the image kept: no host keys,
        // machine id or cloud-init state of the machine it was made from.
        confined::clear(&root, "etc/ssh", |n| n.starts_with("ssh_host_"))?;
        confined::clear(&root, "var/lib/dbus", |n| n == "machine-id")?;
        confined::clear(&root, "var/lib/cloud", |n| matches!(n, "instance" | "instances" | "data" | "sem" | "seed"))?;
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
        let ssh_dir = confined::dir(&root, "root/.ssh")?;
        fs::set_permissions(&ssh_dir, fs::Permissions::from_mode(0o700)).map_err(io_at(&ssh_dir))?;
        write("/root/.ssh/authorized_keys", &(boot.authorized_keys.join("\n") + "\n"), 0o600)?;
        // Generators that do nothing in a container, not started at each boot; never on a
        // disk a machine boots (it stands for a real computer's).
        if self.root_disk().is_none() {
            generators::mask(&root)?;
        }
        // A machine from an lct image with no user-data boots without cloud-init (all it
        // would do is above); any other reads its seed.
        if self.lower_file().exists() && native_boot::chosen() && native_boot::applies(&root, boot) {
            native_boot::write(&root)?;
        } else {
            let instance = format!("lct-{}-{}", node.name, node.provider_id);
            write("/var/lib/cloud/seed/nocloud/meta-data", &boot.meta_data(&instance), 0o600)?;
            write("/var/lib/cloud/seed/nocloud/user-data", &boot.user_data(), 0o600)?;
        }
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
        let base = self.lower(images)?;
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
        let mut args = args;
        // FUSE, as a Linode's kernel offers it (GlusterFS's and other network file systems'
        // clients mount through it); nspawn gives containers no /dev/fuse of their own.
        if Path::new("/dev/fuse").exists() {
            args.push("--bind=/dev/fuse".into());
        }
        // TUN, for wireguard-go (lct-mesh's data plane where the kernel has no WireGuard).
        if Path::new("/dev/net/tun").exists() {
            args.push("--bind=/dev/net/tun".into());
        }
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
        if let Some(node) = self.dir.file_name() {
            super::cgroups::remove_machine(&self.dir, &self.lab, &node.to_string_lossy());
        }
        self.unmount_root()?;
        if self.mounted() {
            // Never remove a tree through a mount: with a disk as root, that is the disk's
            // contents (another Linode disk of the double), not the machine's own files.
            return Err(ProviderError::Invalid(format!("machine {}: its root is still mounted", self.name)));
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
        self.add_device(&volume_path_in_machine(label), device)
    }

    /// Makes `device` (a block device of this machine's host) the block device `path` in the
    /// running machine; `path` is a plain path under /dev (it goes into a command).
    pub fn add_device(&self, path: &str, device: &Path) -> Result<(), ProviderError> {
        let plain = path.strip_prefix("/dev/").is_some_and(|p| {
            !p.is_empty()
                && !p.split('/').any(|c| c.is_empty() || c == "..")
                && p.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.'))
        });
        if !plain {
            return Err(ProviderError::Invalid(format!("{path:?}: a device in a machine is a plain path under /dev")));
        }
        let Some(init) = self.wait_init() else { return Ok(()) };
        use std::os::unix::fs::MetadataExt;
        let meta = fs::metadata(device).map_err(io_at(device))?;
        let (major, minor) = (libc::major(meta.rdev()), libc::minor(meta.rdev()));
        let dir = Path::new(path).parent().map(|d| d.display().to_string()).unwrap_or_else(|| "/dev".into());
        let script = format!("mkdir -p {dir} && rm -f {path} && mknod {path} b {major} {minor}");
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

#[cfg(test)]
mod disk_root_tests {
    use super::Machine;

    fn machine(dir: &std::path::Path) -> Machine {
        let name = "t-node".to_string();
        Machine { dir: dir.join("machines/node"), name: name.clone(), netns: name, lab: "t".into() }
    }

    #[test]
    fn a_disk_without_a_clean_file_system_is_refused_before_any_mount() {
        let dir = tempfile::tempdir().unwrap();
        let m = machine(dir.path());
        // Not a file system at all (a disk an attacker filled), and a truncated one.
        let disk = dir.path().join("disk.raw");
        std::fs::write(&disk, vec![0x5a; 4 << 20]).unwrap();
        assert!(m.set_root_disk(&disk).unwrap(), "a new root");
        let e = m.mount_disk(&disk).unwrap_err().to_string();
        assert!(e.contains("not a clean ext4 file system") && e.contains("disk.raw"), "{e}");
        assert!(!m.mounted());
    }

    #[test]
    fn the_same_disk_again_is_a_reboot_and_another_one_a_first_boot() {
        let dir = tempfile::tempdir().unwrap();
        let m = machine(dir.path());
        let (a, b) = (dir.path().join("a.raw"), dir.path().join("b.raw"));
        assert!(m.set_root_disk(&a).unwrap());
        std::fs::write(m.dir.join("prepared"), b"").unwrap();
        assert!(!m.set_root_disk(&a).unwrap(), "the same disk: nothing changes");
        assert!(m.prepared(), "a reboot keeps its first boot done");
        assert!(m.set_root_disk(&b).unwrap());
        assert!(!m.prepared(), "another disk boots for the first time");
        assert_eq!(m.root_disk().as_deref(), Some(b.as_path()));
    }
}
