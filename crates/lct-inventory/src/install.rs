//! lct's node-side programs on the nodes: `lct-hosts`, `lct-fw`, `lct-dns` and `lct-mesh`, at exactly
//! the controller's version, copied over SSH into `/usr/local/bin` and checked by SHA-256
//! on the node before they replace what was there, with lct-dns's systemd unit (installed,
//! not enabled: a plan that runs a DNS server enables it), lct-fw-boot's (enabled: the
//! firewall lct-fw last applied comes back before the network at every boot) and
//! lct-fw-watch's (enabled and started: it undoes tampering with lct's firewall table). A node that already has the same
//! file (by its SHA-256 there) is not sent it ([`check_script`]: a node made from a baked
//! image gets nothing). Namespace nodes share this machine's programs and are skipped.
//! What the programs need from the node's distribution (`conntrack`, with which lct-fw ends
//! the connections of peers that lost access; `wg`, through which lct-mesh drives WireGuard;
//! wireguard-go where the kernel has no WireGuard, as in the local cloud's machines) is
//! installed with apt when it is missing; on the local cloud the lab's mirror gets those
//! packages first, and only then ([`provide_needs`]).

use std::path::Path;

use lct_core::record::{Access, Node};

use crate::exec::{ExecOptions, ExecResult, exec_each, shell_quote};

/// The programs that run on nodes (`push` runs them there).
pub const NODE_PROGRAMS: [&str; 4] = ["lct-hosts", "lct-fw", "lct-dns", "lct-mesh"];

/// Where they go on a node.
pub const REMOTE_DIR: &str = "/usr/local/bin";

/// The SHA-256 of `bytes` in lower-case hex, as `sha256sum` prints it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Where the node-side build of the programs in `dir` puts them: `DIR/node-side` in a cargo
/// build directory (`target/release/node-side`, scripts/lib/cargo.sh's `build_node_side`),
/// `DIR/../libexec/lct` where they are installed (`/usr/local/libexec/lct`, scripts/install).
pub const NODE_SIDE_DIRS: [&str; 2] = ["node-side", "../libexec/lct"];

/// The node-side build of program `name` of the build in `dir`, else `dir/name` (a build
/// without a node-side one ships the controller's programs, as before).
pub fn node_side_path(dir: &Path, name: &str) -> std::path::PathBuf {
    NODE_SIDE_DIRS.iter().map(|d| dir.join(d).join(name)).find(|p| p.is_file()).unwrap_or_else(|| dir.join(name))
}

/// lct-dns's systemd unit (`packaging/systemd/lct-dns.service`) and where it goes.
pub const DNS_UNIT: &str = include_str!("../../../packaging/systemd/lct-dns.service");
pub const UNIT_DIR: &str = "/etc/systemd/system";
/// `lct-fw watch`'s systemd unit (`packaging/systemd/lct-fw-watch.service`).
/// The unit that loads the saved firewall before the network (`lct-fw boot`).
pub const FW_BOOT_UNIT: &str = include_str!("../../../packaging/systemd/lct-fw-boot.service");
/// Run after lct-fw-boot's unit is in place, also when unchanged: enabled it must be (it runs
/// at the next boot; the firewall of this boot is lct-fw push's).
const FW_BOOT_ACTIVATE: &str = "systemctl enable --quiet lct-fw-boot.service";
/// `lct-fw watch`'s systemd unit (`packaging/systemd/lct-fw-watch.service`).
pub const WATCH_UNIT: &str = include_str!("../../../packaging/systemd/lct-fw-watch.service");

/// Run after lct-fw-watch's unit is in place (also when unchanged: a node where it was
/// stopped gets it back); `$changed` is 1 when the file was replaced. Nodes without systemd
/// are told, not failed.
const WATCH_ACTIVATE: &str = "if [ -d /run/systemd/system ]; then systemctl daemon-reload; \
     if [ \"$changed\" = 1 ]; then systemctl enable -q lct-fw-watch.service && systemctl restart lct-fw-watch.service; \
     else systemctl enable -q --now lct-fw-watch.service; fi; \
     else echo 'no systemd: lct-fw-watch not started' >&2; fi";
/// Run after lct-fw is replaced: a running watcher moves to the new program. Only a watcher
/// that runs: on a new node lct-fw comes before the watcher's unit, which systemd does not
/// know yet (`try-restart` fails there with "Unit not found").
const FW_ACTIVATE: &str = "if [ \"$changed\" = 1 ] && [ -d /run/systemd/system ] && \
     systemctl is-active --quiet lct-fw-watch.service; then systemctl restart lct-fw-watch.service; fi";

/// A file to install: its name, bytes and SHA-256, the directory it goes to and its mode.
pub struct Program {
    pub name: String,
    pub bytes: Vec<u8>,
    pub sha256: String,
    pub dir: &'static str,
    pub mode: &'static str,
    /// Shell run once the file is in place (`$changed`: 1 if it was replaced, else 0).
    pub activate: Option<&'static str>,
}

impl Program {
    pub fn new(name: &str, bytes: Vec<u8>) -> Program {
        let sha256 = sha256_hex(&bytes);
        let activate = (name == "lct-fw").then_some(FW_ACTIVATE);
        Program { name: name.to_string(), bytes, sha256, dir: REMOTE_DIR, mode: "755", activate }
    }

    /// The node-side programs of the build in `dir` (beside the running program: the same
    /// build), and lct-dns's, lct-fw-boot's and lct-fw-watch's units. Each program is the
    /// node-side build's where there is one ([`node_side_path`]: without the Linode client, a
    /// third of the crates), else the controller's own.
    pub fn beside(dir: &Path) -> std::io::Result<Vec<Program>> {
        let mut programs: Vec<Program> = NODE_PROGRAMS
            .iter()
            .map(|name| {
                let path = node_side_path(dir, name);
                std::fs::read(&path)
                    .map(|bytes| Program::new(name, bytes))
                    .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))
            })
            .collect::<std::io::Result<_>>()?;
        programs.push(Program {
            dir: UNIT_DIR,
            mode: "644",
            ..Program::new("lct-dns.service", DNS_UNIT.as_bytes().to_vec())
        });
        programs.push(Program {
            dir: UNIT_DIR,
            mode: "644",
            activate: Some(FW_BOOT_ACTIVATE),
            ..Program::new("lct-fw-boot.service", FW_BOOT_UNIT.as_bytes().to_vec())
        });
        programs.push(Program {
            dir: UNIT_DIR,
            mode: "644",
            activate: Some(WATCH_ACTIVATE),
            ..Program::new("lct-fw-watch.service", WATCH_UNIT.as_bytes().to_vec())
        });
        Ok(programs)
    }

    /// The shell run on the node: skip when the same file is there; else write beside it,
    /// check the hash, and rename over it (a failed copy leaves the old program in place);
    /// then its activation (a unit enabled, a service restarted), if it has one.
    pub fn script(&self) -> String {
        let target = format!("{}/{}", self.dir, self.name);
        let temp = format!("{}/.{}.lct-new", self.dir, self.name);
        format!(
            "set -e; mkdir -p {dir}; \
             if [ \"$(sha256sum {target} 2>/dev/null | cut -d' ' -f1)\" = {hash} ]; then cat >/dev/null; changed=0; echo unchanged; else \
             cat > {temp}; echo '{hash}  {temp}' | sha256sum -c --quiet || {{ rm -f {temp}; exit 1; }}; \
             chmod {mode} {temp}; mv -f {temp} {target}; changed=1; echo installed; fi; {activate}",
            activate = self.activate.unwrap_or(":"),
            dir = shell_quote(self.dir),
            mode = self.mode,
            target = shell_quote(&target),
            temp = shell_quote(&temp),
            hash = self.sha256,
        )
    }
}

/// A command a node-side program runs, and the Debian package that has it.
pub struct Need {
    pub command: &'static str,
    pub package: &'static str,
    /// Shell that succeeds where the command is not needed (else it is always needed).
    pub unless: Option<&'static str>,
}

/// The commands the node-side programs run, by the Debian package that has them.
pub const NODE_NEEDS: [Need; 3] = [
    Need { command: "conntrack", package: "conntrack", unless: None },
    Need { command: "wg", package: "wireguard-tools", unless: None },
    // lct-mesh falls back to wireguard-go only when the kernel cannot make a WireGuard link
    // (Linode's Debian can: nothing more there; a container sharing a kernel without it
    // cannot load the module).
    Need { command: "wireguard-go", package: "wireguard-go", unless: Some("modprobe -q wireguard 2>/dev/null") },
];

/// The Debian packages of [`NODE_NEEDS`] (what the lab's mirror must have).
pub fn need_packages() -> Vec<String> {
    NODE_NEEDS.iter().map(|n| n.package.to_string()).collect()
}

/// On the local cloud, the lab's package mirror gets [`NODE_NEEDS`]'s packages (its
/// machines' apt reaches nothing else); other providers' nodes reach Debian themselves.
pub async fn provide_needs(nodes: &[Node]) -> Result<(), lct_api::ProviderError> {
    use lct_api::Provider as _;
    let local = lct_core::record::ProviderName::Local;
    if nodes.iter().any(|n| n.provider == local && matches!(n.access, Some(Access::Ssh { .. }))) {
        lct_api::AnyProvider::from_env(local)?.provide_packages(&need_packages()).await?;
    }
    Ok(())
}

/// Shell that leaves in `$missing` the packages of [`NODE_NEEDS`] whose command the node
/// lacks (space-separated, each after a space).
fn needs_checks() -> String {
    let checks: Vec<String> = NODE_NEEDS
        .iter()
        .map(|Need { command, package, unless }| {
            let check = format!("command -v {command} >/dev/null 2>&1 || missing=\"$missing {package}\";");
            match unless {
                Some(condition) => format!("{{ {condition}; }} || {{ {check} }};"),
                None => check,
            }
        })
        .collect();
    format!("missing=; {}", checks.join(" "))
}

/// The shell run on a node for what the programs need: nothing when every command is there,
/// else apt installs the missing packages (with a fresh index when the first try fails: a
/// new machine's lists may be empty or old).
pub fn needs_script() -> String {
    format!(
        "{checks} [ -z \"$missing\" ] && {{ echo present; exit 0; }}; \
         export DEBIAN_FRONTEND=noninteractive; \
         apt-get install -y -qq --no-install-recommends $missing >/dev/null 2>&1 || \
         {{ apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing >/dev/null; }} || \
         {{ echo \"could not install$missing with apt\" >&2; exit 1; }}; echo \"installed$missing\"",
        checks = needs_checks()
    )
}

/// Run first on a node, in one session with nothing on its standard input: for each
/// program, whether the file there has the controller's SHA-256 (the digest of what is
/// there, never its name or version). One that has it is not sent again and its activation
/// runs here (`changed=0`: a unit enabled, a watcher started), as [`Program::script`] would
/// have run it; the others are printed as `differs NAME` and sent next. A node made from a
/// baked image has them all: one session, no program bytes carried. Last, what the
/// programs need and the node lacks ([`NODE_NEEDS`]), as `needs PACKAGE...`: apt runs only
/// then, and the lab's mirror is filled only then.
pub fn check_script(programs: &[Program]) -> String {
    let mut script = String::from("set -e; ");
    for p in programs {
        let target = format!("{}/{}", p.dir, p.name);
        // The activation runs in a shell of its own with `-e` (a condition would switch `-e`
        // off inside it): one that fails marks its program as differing, so the program is
        // sent and its own install runs the activation again and reports the failure there,
        // rather than the whole check failing and nothing reaching the node.
        script.push_str(&format!(
            "if [ \"$(sha256sum {target} 2>/dev/null | cut -d' ' -f1)\" = {hash} ] && sh -ec {activate}; \
             then echo unchanged {name}; else echo differs {name}; fi; ",
            target = shell_quote(&target),
            hash = p.sha256,
            activate = shell_quote(&format!("changed=0; {}", p.activate.unwrap_or(":"))),
            name = shell_quote(&p.name),
        ));
    }
    script.push_str(&needs_checks());
    script.push_str(" [ -z \"$missing\" ] || echo \"needs$missing\"; echo checked");
    script
}

/// The programs to send after a node's check ([`check_script`]): every one it did not say
/// `unchanged NAME` of (as the shell echoes the name: unquoted). What the check left unclear
/// is sent, never skipped.
fn differing<'a>(stdout: &str, programs: &'a [Program]) -> Vec<&'a Program> {
    let kept: Vec<&str> = stdout.lines().filter_map(|l| l.strip_prefix("unchanged ")).collect();
    programs.iter().filter(|p| !kept.contains(&p.name.as_str())).collect()
}

/// Installs `programs` and what they need on every SSH node of `nodes`. Each node first
/// checks, in one session, which programs it has already and which needs it lacks
/// ([`check_script`]); then only the programs that differ are sent, each checked by its
/// SHA-256 on the node before it replaces the old one ([`Program::script`]), and apt runs
/// only on a node that lacks a need (the lab's mirror filled first, [`provide_needs`]).
/// Results: one per node for the check, one per program sent, one per node that lacked a
/// need (not started, naming why, when the mirror could not be filled).
pub async fn install(nodes: &[Node], programs: &[Program], options: &ExecOptions) -> Vec<ExecResult> {
    let ssh: Vec<&Node> = nodes.iter().filter(|n| matches!(n.access, Some(Access::Ssh { .. }))).collect();
    let sh = |script: String| vec!["sh".to_string(), "-c".to_string(), script];
    let checks = ssh.iter().map(|n| ((*n).clone(), sh(check_script(programs)), Vec::new())).collect();
    let checked = exec_each(checks, options, None).await;
    let mut sends = Vec::new();
    let mut needy: Vec<Node> = Vec::new();
    for r in checked.iter().filter(|r| r.outcome.success()) {
        let node = ssh.iter().find(|n| n.name == r.node).expect("a result is of a node asked");
        // A check that did not end with its last line was cut short: everything is sent.
        let complete = r.stdout.lines().last() == Some("checked");
        let differ = if complete { differing(&r.stdout, programs) } else { programs.iter().collect() };
        for p in differ {
            sends.push(((*node).clone(), sh(p.script()), p.bytes.clone()));
        }
        if !complete || r.stdout.lines().any(|l| l.starts_with("needs ")) {
            needy.push((*node).clone());
        }
    }
    let mut results = checked;
    if !needy.is_empty() {
        match provide_needs(&needy).await {
            Ok(()) => sends.extend(needy.into_iter().map(|n| (n, sh(needs_script()), Vec::new()))),
            Err(e) => results.extend(needy.into_iter().map(|n| ExecResult {
                node: n.name.clone(),
                cluster: n.cluster.clone(),
                outcome: crate::exec::Outcome::NotStarted {
                    reason: format!("the lab's mirror, for what lct's programs need: {e}"),
                },
                stdout: String::new(),
                stderr: format!("the lab's mirror, for what lct's programs need: {e}"),
                duration_ms: 0,
            })),
        }
    }
    results.extend(exec_each(sends, options, None).await);
    results
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_side_build_is_shipped_where_there_is_one() {
        let build = tempfile::tempdir().unwrap();
        let bin = build.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        for name in NODE_PROGRAMS {
            std::fs::write(bin.join(name), b"controller's").unwrap();
        }
        let shipped = |dir: &Path| -> Vec<Vec<u8>> {
            Program::beside(dir).unwrap().into_iter().filter(|p| p.dir == REMOTE_DIR).map(|p| p.bytes).collect()
        };
        assert_eq!(
            shipped(&bin),
            vec![b"controller's".to_vec(); NODE_PROGRAMS.len()],
            "no node-side build: the controller's own"
        );
        // An installed layout: PREFIX/bin beside PREFIX/libexec/lct.
        let libexec = build.path().join("libexec/lct");
        std::fs::create_dir_all(&libexec).unwrap();
        std::fs::write(libexec.join("lct-hosts"), b"lean hosts").unwrap();
        let got = shipped(&bin);
        assert_eq!(got[0], b"lean hosts", "lct-hosts from libexec/lct");
        assert_eq!(got[1], b"controller's", "lct-fw has no node-side build here");
        // A cargo build directory: PROFILE/node-side, taken first.
        std::fs::create_dir_all(bin.join("node-side")).unwrap();
        std::fs::write(bin.join("node-side/lct-fw"), b"lean fw").unwrap();
        assert_eq!(shipped(&bin)[1], b"lean fw");
    }

    #[test]
    fn the_script_checks_the_hash_before_replacing() {
        let mut p = Program::new("lct-fw", b"binary".to_vec());
        let script = p.script();
        assert!(
            script.contains("is-active --quiet lct-fw-watch.service; then systemctl restart lct-fw-watch.service"),
            "a new lct-fw restarts a running watcher, and only a running one: {script}"
        );
        // Run below without touching this host's services.
        p.activate = None;
        assert_eq!(p.sha256, "9a3a45d01531a20e89ac6ae10b0b0beb0492acd7216a368aa062d1a5fecaf9cd");
        let script = p.script();
        let check = script.find("sha256sum -c").unwrap();
        let replace = script.find("mv -f").unwrap();
        assert!(check < replace, "{script}");
        // Run it for real against a temporary directory standing for /usr/local/bin.
        let dir = tempfile::tempdir().unwrap();
        let local = script.replace(REMOTE_DIR, dir.path().to_str().unwrap());
        let run = |input: &[u8]| {
            use std::io::Write;
            let mut child = std::process::Command::new("sh")
                .args(["-c", &local])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            child.stdin.take().unwrap().write_all(input).unwrap();
            let out = child.wait_with_output().unwrap();
            (out.status.success(), String::from_utf8_lossy(&out.stdout).trim().to_string())
        };
        assert_eq!(run(b"binary"), (true, "installed".to_string()));
        assert_eq!(std::fs::read(dir.path().join("lct-fw")).unwrap(), b"binary");
        assert_eq!(run(b"binary"), (true, "unchanged".to_string()));
        // A copy that arrives damaged is refused and the installed program stays.
        std::fs::write(dir.path().join("lct-fw"), b"old").unwrap();
        assert!(!run(b"binarx").0);
        assert_eq!(std::fs::read(dir.path().join("lct-fw")).unwrap(), b"old");
        assert!(!dir.path().join(".lct-fw.lct-new").exists());
    }

    /// The check sends nothing a node has (by digest, not by name), runs the activation of
    /// what it has, and names what differs or is missing.
    #[test]
    fn the_check_names_only_the_programs_whose_digest_differs() {
        let dir = tempfile::tempdir().unwrap();
        let at = dir.path().to_str().unwrap();
        let mut same = Program::new("lct-hosts", b"same".to_vec());
        same.activate = Some("touch \"$ACTIVATED/hosts.$changed\"");
        let other = Program::new("lct-fw", b"new build".to_vec());
        let absent = Program::new("lct-dns", b"dns".to_vec());
        std::fs::write(dir.path().join("lct-hosts"), b"same").unwrap();
        // Same name, same size, other bytes: sent again.
        std::fs::write(dir.path().join("lct-fw"), b"old build").unwrap();
        let programs = [same, other, absent];
        let script = check_script(&programs).replace(REMOTE_DIR, at);
        let out = std::process::Command::new("sh").args(["-c", &script]).env("ACTIVATED", at).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        // What this host lacks of the needs is the next test's matter.
        let stdout: String = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.starts_with("needs "))
            .map(|l| l.to_string() + "\n")
            .collect();
        assert_eq!(stdout, "unchanged lct-hosts\ndiffers lct-fw\ndiffers lct-dns\nchecked\n");
        let names: Vec<&str> = differing(&stdout, &programs).iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["lct-fw", "lct-dns"]);
        assert!(dir.path().join("hosts.0").exists(), "the activation of a program in place ran, changed=0");
        // A failing activation (its first command: `-e` in force) sends its program again, whose
        // own install reports it; the other programs are checked as before.
        let mut failing = Program::new("lct-hosts", b"same".to_vec());
        failing.activate = Some("false; touch \"$ACTIVATED/went-on\"");
        let mut quoted = Program::new("lct fw's", b"spaced".to_vec());
        quoted.activate = None;
        std::fs::write(dir.path().join("lct fw's"), b"spaced").unwrap();
        let programs = [failing, quoted];
        let script = check_script(&programs).replace(REMOTE_DIR, at);
        let out = std::process::Command::new("sh").args(["-c", &script]).env("ACTIVATED", at).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!dir.path().join("went-on").exists(), "the activation stopped at its failing command");
        let names: Vec<&str> = differing(&stdout, &programs).iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["lct-hosts"], "{stdout}");
        // A check that said nothing of a program sends it.
        assert_eq!(differing("checked\n", &programs).len(), 2);
    }

    /// The check names the needs a node lacks (so apt and the mirror are asked only then),
    /// and nothing when it has them.
    #[test]
    fn the_check_names_the_needs_a_node_lacks() {
        use std::os::unix::fs::PermissionsExt;
        let bin = tempfile::tempdir().unwrap();
        let stub = |name: &str, body: &str| {
            let path = bin.path().join(name);
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        stub("modprobe", "exit 1");
        stub("conntrack", "exit 0");
        let check = |path: &str| {
            let out = std::process::Command::new("/bin/sh")
                .args(["-c", &check_script(&[])])
                .env("PATH", path)
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let path = bin.path().display().to_string();
        assert_eq!(check(&path), "needs wireguard-tools wireguard-go\nchecked\n");
        stub("wg", "exit 0");
        stub("wireguard-go", "exit 0");
        assert_eq!(check(&path), "checked\n");
    }

    #[test]
    fn needs_are_asked_of_apt_only_when_missing() {
        use std::os::unix::fs::PermissionsExt;
        // Stand-ins on an otherwise empty PATH: apt-get records what it was asked for.
        let run = |present: &[&str], modprobe_ok: bool| -> (String, String) {
            let bin = tempfile::tempdir().unwrap();
            let stub = |name: &str, body: &str| {
                let path = bin.path().join(name);
                std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            };
            for name in present {
                stub(name, "exit 0");
            }
            stub("modprobe", if modprobe_ok { "exit 0" } else { "exit 1" });
            let asked = bin.path().join("asked");
            stub("apt-get", &format!("echo \"$@\" >> {}", asked.display()));
            let out = std::process::Command::new("/bin/sh")
                .args(["-c", &needs_script()])
                .env("PATH", bin.path())
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let asked = std::fs::read_to_string(asked).unwrap_or_default();
            (String::from_utf8_lossy(&out.stdout).trim().to_string(), asked)
        };
        assert_eq!(run(&["conntrack", "wg", "wireguard-go"], false), ("present".into(), String::new()));
        // A kernel with WireGuard needs no wireguard-go.
        assert_eq!(run(&["conntrack", "wg"], true), ("present".into(), String::new()));
        // Without it (a machine of the local cloud), wireguard-go is installed, with wg.
        let (said, asked) = run(&["conntrack"], false);
        assert_eq!(said, "installed wireguard-tools wireguard-go");
        assert!(asked.contains("install") && asked.contains("wireguard-tools wireguard-go"), "{asked}");
        assert!(!asked.contains("conntrack"), "{asked}");
    }
}
