//! A reboot never opens a node: a machine node's firewall holds from the first packet after
//! its boot (lct-fw-boot.service loads the saved ruleset, else default-deny), and the local
//! cloud resets on a machine's stop/start and on its reboot from inside what a real reboot
//! resets (nftables ruleset, conntrack, sysctls), so these tests see what Linode shows.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use lct_tests::Env;

/// A port the cluster's firewall does not admit from outside, and the service that listens
/// on it from boot.
const PORT: u16 = 7777;
const SERVICE: &str = "[Unit]\nDescription=a service that listens from boot (lct test)\n\n\
[Service]\nExecStart=/usr/bin/python3 -m http.server 7777\n\n[Install]\nWantedBy=multi-user.target\n";

/// A machine node of cluster `cluster`: its name and public address.
fn machine(env: &Env, cluster: &str) -> (String, String) {
    let nodes = env
        .run("lct-api", &["create", "--cluster", cluster, "--count", "1", "--image", "debian-12", "-o", "jsonl"])
        .ok()
        .json_lines();
    let name = nodes[0]["name"].as_str().unwrap().to_string();
    (name, nodes[0]["public_ipv4"][0].as_str().unwrap().to_string())
}

/// Runs a command in a namespace of the lab (`ip netns exec`).
fn in_ns(ns: &str, args: &[&str]) -> lct_tests::Run {
    let mut full = vec!["netns", "exec", ns];
    full.extend_from_slice(args);
    lct_tests::Run::from(std::process::Command::new("ip").args(&full).output().unwrap())
}

/// Whether something listens on TCP `port` in the namespace `ns` now (its /proc/net/tcp*).
fn listening(ns: &str, port: u16) -> bool {
    lct_core::state::in_netns(ns, || {
        ["tcp", "tcp6"].iter().any(|f| {
            std::fs::read_to_string(format!("/proc/thread-self/net/{f}")).is_ok_and(|t| {
                t.lines().skip(1).any(|l| {
                    let cols: Vec<&str> = l.split_whitespace().collect();
                    cols.len() > 3 && cols[3] == "0A" && cols[1].ends_with(&format!(":{port:04X}"))
                })
            })
        })
    })
    .unwrap_or(false)
}

/// The machine's container (systemd-nspawn) pid, if it runs.
fn container_pid(env: &Env, node: &str) -> Option<String> {
    let pid = std::fs::read_to_string(env.state.path().join(format!("local/machines/{node}/pid"))).ok()?;
    let pid = pid.trim().to_string();
    std::path::Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
}

/// Waits (bounded) for `ok`.
fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Reboots the machine from inside and waits until a new container runs and answers SSH.
fn reboot_inside(env: &Env, node: &str) {
    let before = container_pid(env, node).expect("the machine runs");
    // The connection may end before ssh hears back: its status says nothing.
    let _ = env.ssh(node, "systemctl reboot");
    wait_for("the machine back after its reboot", Duration::from_secs(120), || {
        container_pid(env, node).is_some_and(|p| p != before) && env.ssh(node, "true").status == 0
    });
}

/// Probes made while the service listens, after each start, before the probing ends.
const SAMPLES: usize = 50;

/// Probes `target` from the lab's outside namespace every 20 ms (50 ms timeouts) while the
/// test goes on, noting whether the node's service was listening at each probe.
struct Prober {
    stop: Arc<AtomicBool>,
    admitted: Arc<AtomicUsize>,
    listening_samples: Arc<AtomicUsize>,
    probes: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Prober {
    fn start(outside: String, node_ns: String, target: SocketAddr) -> Prober {
        let stop = Arc::new(AtomicBool::new(false));
        let (admitted, listening_samples, probes) = Default::default();
        let p = Prober { stop, admitted, listening_samples, probes, thread: None };
        let (stop, admitted, samples, probes) =
            (p.stop.clone(), p.admitted.clone(), p.listening_samples.clone(), p.probes.clone());
        let thread = std::thread::spawn(move || {
            // Bounded: ten minutes at most, whatever the test does.
            let deadline = Instant::now() + Duration::from_secs(600);
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                let listens = listening(&node_ns, PORT);
                let got_in = lct_core::state::in_netns(&outside, || {
                    std::net::TcpStream::connect_timeout(&target, Duration::from_millis(50)).is_ok()
                })
                .unwrap_or(false);
                probes.fetch_add(1, Ordering::SeqCst);
                if listens {
                    samples.fetch_add(1, Ordering::SeqCst);
                }
                if got_in {
                    admitted.fetch_add(1, Ordering::SeqCst);
                    eprintln!("probe admitted at {:?} (listening: {listens})", std::time::SystemTime::now());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Prober { thread: Some(thread), ..p }
    }

    fn listening_samples(&self) -> usize {
        self.listening_samples.load(Ordering::SeqCst)
    }

    /// Waits until `count` more probes were made while the service listened (about a second
    /// of them on a quiet machine), however long a busy one takes.
    fn probes_on_while_listening(&self, count: usize) {
        let goal = self.listening_samples() + count;
        wait_for("probes while the service listens", Duration::from_secs(60), || self.listening_samples() >= goal);
    }

    /// Stops probing: (probes, admitted).
    fn finish(mut self) -> (usize, usize) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap();
        (self.probes.load(Ordering::SeqCst), self.admitted.load(Ordering::SeqCst))
    }
}

/// A cluster of one machine with lct's node-side programs installed (and lct-fw-boot
/// enabled), its firewall declared (SSH from the lab's public network, PORT for the
/// cluster's own nodes only) and the service on PORT enabled at boot, and running.
fn cluster_with_service(env: &Env, cluster: &str) -> (String, String) {
    let (node, public) = machine(env, cluster);
    let allow = format!("self->*:{PORT}/tcp");
    env.run("lct-fw", &["declare", cluster, "--admin-cidr", "203.0.113.0/24", "--allow", &allow]).ok();
    env.run("lct-inventory", &["install", "--cluster", cluster]).ok();
    let enabled = env.ssh(
        &node,
        &format!(
            "printf '{}' > /etc/systemd/system/probe-target.service && systemctl enable --now --quiet probe-target && systemctl is-enabled lct-fw-boot",
            SERVICE.replace('\n', "\\n")
        ),
    );
    assert_eq!(enabled.stdout.trim(), "enabled", "{}", enabled.stderr);
    (node, public)
}

#[test]
#[ignore = "needs root: network namespaces, overlays and systemd-nspawn (scripts/test runs it as root)"]
fn a_machine_stopped_started_and_rebooted_inside_never_admits_a_probe_to_its_boot_service() {
    let env = Env::new();
    let (node, public) = cluster_with_service(&env, "rb");
    env.run("lct-fw", &["push", "--cluster", "rb"]).ok();
    let ns = env.ns(&node);
    let pushed = in_ns(&ns, &["nft", "list", "table", "inet", "lct"]).ok().stdout;
    assert!(pushed.contains(&format!("tcp dport {PORT} drop")), "{pushed}");
    assert_eq!(env.ssh(&node, "test -s /var/lib/lct/fw/saved.json").status, 0, "nothing saved for the boot");

    let target: SocketAddr = format!("{public}:{PORT}").parse().unwrap();
    let prober = Prober::start(env.ns("outside"), ns.clone(), target);
    env.run("lct-api", &["stop", &node]).ok();
    env.run("lct-api", &["start", &node]).ok();
    // Probing on until well after the service is up again.
    wait_for("the service listening after start", Duration::from_secs(60), || listening(&ns, PORT));
    prober.probes_on_while_listening(SAMPLES);
    let after_start = prober.listening_samples();
    reboot_inside(&env, &node);
    wait_for("the service listening after the reboot", Duration::from_secs(60), || listening(&ns, PORT));
    prober.probes_on_while_listening(SAMPLES);
    let after_reboot = prober.listening_samples() - after_start;
    let (probes, admitted) = prober.finish();

    assert_eq!(admitted, 0, "{admitted} of {probes} probes got in");
    assert!(after_start > 0 && after_reboot > 0, "the service was not seen listening ({after_start}, {after_reboot})");
    // The prober's way in works: from the same namespace, with the same connect, the port the
    // firewall admits (SSH) answers at the same address. A wrong address or route cannot pass
    // for a closed firewall.
    let ssh: SocketAddr = format!("{public}:22").parse().unwrap();
    let reached = lct_core::state::in_netns(&env.ns("outside"), || {
        std::net::TcpStream::connect_timeout(&ssh, Duration::from_millis(500)).is_ok()
    })
    .unwrap_or(false);
    assert!(reached, "the outside namespace does not reach {ssh}: the probes prove nothing");
    // The boot loaded what was pushed, not a default.
    let booted = in_ns(&ns, &["nft", "list", "table", "inet", "lct"]).ok().stdout;
    assert_eq!(booted, pushed);
}

#[test]
#[ignore = "needs root: network namespaces, overlays and systemd-nspawn (scripts/test runs it as root)"]
fn a_machine_with_no_saved_firewall_boots_default_deny_not_open() {
    let env = Env::new();
    // Installed (lct-fw-boot enabled), never pushed: nothing saved.
    let (node, public) = cluster_with_service(&env, "dd");
    let ns = env.ns(&node);
    assert_ne!(env.ssh(&node, "test -e /var/lib/lct/fw/saved.json").status, 0);
    let target: SocketAddr = format!("{public}:{PORT}").parse().unwrap();
    // Open before the reboot: no firewall was ever applied.
    wait_for("the service listening", Duration::from_secs(30), || listening(&ns, PORT));
    assert!(
        lct_core::state::in_netns(&env.ns("outside"), || std::net::TcpStream::connect_timeout(
            &target,
            Duration::from_secs(1)
        )
        .is_ok())
        .unwrap()
    );

    env.run("lct-api", &["stop", &node]).ok();
    // Probed from before it boots (it was open until its stop).
    let prober = Prober::start(env.ns("outside"), ns.clone(), target);
    // SSH stays reachable (lct's way back in): start waits for it.
    env.run("lct-api", &["start", &node]).ok();
    wait_for("the service listening after start", Duration::from_secs(60), || listening(&ns, PORT));
    prober.probes_on_while_listening(SAMPLES);
    let samples = prober.listening_samples();
    let (probes, admitted) = prober.finish();
    assert_eq!(admitted, 0, "{admitted} of {probes} probes got in");
    assert!(samples > 0, "the service was not seen listening");
    let table = in_ns(&ns, &["nft", "list", "table", "inet", "lct"]).ok().stdout;
    assert!(table.contains("policy drop;") && table.contains("tcp dport 22 accept"), "{table}");
    let log = env.ssh(&node, "journalctl -b -u lct-fw-boot --no-pager -o cat");
    assert!(log.stdout.contains("no usable saved firewall"), "{}", log.stdout);
}

#[test]
#[ignore = "needs root: network namespaces, overlays and systemd-nspawn (scripts/test runs it as root)"]
fn a_machines_stop_start_and_reboot_inside_reset_its_ruleset_conntrack_and_sysctls() {
    let env = Env::new();
    let (node, _) = machine(&env, "rs");
    let ns = env.ns(&node);
    let key = "net.ipv6.conf.all.forwarding";
    // What a fresh network stack has, and the opposite.
    let fresh = std::process::Command::new("unshare").args(["--net", "sysctl", "-n", key]).output().unwrap();
    let fresh = String::from_utf8_lossy(&fresh.stdout).trim().to_string();
    let changed = if fresh == "0" { "1" } else { "0" };
    let leave_marks = || {
        in_ns(&ns, &["nft", "add", "table", "inet", "leftover"]).ok();
        in_ns(&ns, &["sysctl", "-q", "-w", &format!("{key}={changed}")]).ok();
        in_ns(
            &ns,
            &[
                "conntrack",
                "-I",
                "-s",
                "198.51.100.7",
                "-d",
                "203.0.113.9",
                "-p",
                "tcp",
                "--sport",
                "4000",
                "--dport",
                "5000",
                "--state",
                "ESTABLISHED",
                "-t",
                "600",
                "-u",
                "SEEN_REPLY",
            ],
        )
        .ok();
    };
    let marks = || {
        let tables = in_ns(&ns, &["nft", "list", "tables"]).ok().stdout;
        let sysctl = in_ns(&ns, &["sysctl", "-n", key]).ok().stdout.trim().to_string();
        let conntrack = in_ns(&ns, &["conntrack", "-L", "-s", "198.51.100.7"]).stdout;
        (tables.contains("leftover"), sysctl == changed, conntrack.contains("dport=5000"))
    };
    leave_marks();
    assert_eq!(marks(), (true, true, true), "the marks were not left");

    env.run("lct-api", &["stop", &node]).ok();
    env.run("lct-api", &["start", &node]).ok();
    assert_eq!(marks(), (false, false, false), "stop and start left the last boot's ruleset, sysctl or conntrack");

    leave_marks();
    assert_eq!(marks(), (true, true, true));
    reboot_inside(&env, &node);
    assert_eq!(marks(), (false, false, false), "a reboot inside left the last boot's ruleset, sysctl or conntrack");
    let got = env.run("lct-api", &["get", &node, "-o", "jsonl"]).ok().json_lines();
    assert_eq!(got[0]["status"], "running", "{}", got[0]);
}
