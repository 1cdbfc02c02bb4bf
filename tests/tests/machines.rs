//! Machine nodes on the local cloud: real Debian machines (systemd, sshd, cloud-init) in the
//! nodes' namespaces, reached over SSH with lct's pinned host keys only.

use std::process::Command;

use lct_tests::{Env, Run};

fn ssh_args(env: &Env, node: &serde_json::Value) -> Vec<String> {
    let access = &node["access"];
    let mut argv: Vec<String> =
        vec!["netns".into(), "exec".into(), access["netns"].as_str().unwrap().into(), "ssh".into()];
    let ssh = env.state.path().join("ssh");
    for o in [
        "BatchMode=yes".to_string(),
        "StrictHostKeyChecking=yes".to_string(),
        format!("UserKnownHostsFile={}", ssh.join("known_hosts").display()),
        "GlobalKnownHostsFile=/dev/null".to_string(),
        format!("IdentityFile={}", ssh.join("id_ed25519").display()),
        "IdentitiesOnly=yes".to_string(),
        "ConnectTimeout=5".to_string(),
    ] {
        argv.extend(["-o".into(), o]);
    }
    argv.push(format!("root@{}", access["host"].as_str().unwrap()));
    argv
}

fn ip(args: &[String]) -> Run {
    let out = Command::new("ip").args(args).output().unwrap();
    Run {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    }
}

/// `lab down`, then no container, no overlay, no namespace and no cgroup of this test is left.
fn lab_down_leaves_nothing(env: &Env) {
    env.run("lct-api", &["lab", "down"]).ok();
    let state_dir = env.state.path().display().to_string();
    let procs = Command::new("pgrep").args(["-f", &format!("systemd-nspawn.*{state_dir}")]).output().unwrap();
    assert!(procs.stdout.is_empty(), "containers left: {}", String::from_utf8_lossy(&procs.stdout));
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&state_dir), "mounts left under {state_dir}");
    assert!(env.namespaces().is_empty(), "namespaces left: {:?}", env.namespaces());
    // Nor a machine's own cgroup (with the container's `payload/...` below it), in either
    // hierarchy of a hybrid host: the kernel never removes an empty cgroup by itself.
    assert!(env.machine_cgroups().is_empty(), "cgroups left: {:?}", env.machine_cgroups());
}

#[test]
#[ignore = "needs root: network namespaces, overlays and systemd-nspawn (scripts/test runs it as root)"]
fn a_machine_cluster_boots_answers_ssh_with_pinned_keys_only_and_leaves_nothing() {
    let env = Env::new();
    // The user's own user-data is merged with lct's first boot, not dropped.
    let user_data = env.state.path().join("user-data.sh");
    std::fs::write(&user_data, "#!/bin/sh\necho ran > /etc/lct-user-data-ran\n").unwrap();
    let args = ["create", "--cluster", "m", "--count", "3", "--image", "debian-12", "--user-data"];
    let mut args: Vec<&str> = args.to_vec();
    args.extend([user_data.to_str().unwrap(), "-o", "jsonl"]);
    let created = env.run("lct-api", &args).ok();
    let nodes = created.json_lines();
    assert_eq!(nodes.len(), 3, "{}", created.stdout);
    for n in &nodes {
        assert_eq!(n["status"], "running", "{n}");
        assert_eq!(n["access"]["method"], "ssh", "{n}");
    }

    // Each machine is itself: its host name, a booted systemd, its own /etc.
    let hostnames = env.run("lct-inventory", &["exec", "--cluster", "m", "-o", "jsonl", "--", "hostname"]).ok();
    assert_eq!(hostnames.json_lines().len(), 3, "{}", hostnames.stdout);
    for line in hostnames.json_lines() {
        assert_eq!(line["stdout"].as_str().unwrap().trim(), line["node"].as_str().unwrap(), "{line}");
    }
    // No machine's nspawn sees the host's /run/netns: no node's namespace is copied into it
    // (each new one used to be, under the kernel's mount lock) or held alive by it.
    let nspawns = Command::new("pgrep")
        .args(["-f", &format!("systemd-nspawn.*{}", env.state.path().display())])
        .output()
        .unwrap();
    let pids: Vec<String> = String::from_utf8_lossy(&nspawns.stdout).split_whitespace().map(String::from).collect();
    assert_eq!(pids.len(), 3, "{pids:?}");
    for pid in pids {
        let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
        assert!(!mounts.contains(" - nsfs "), "a namespace mount in nspawn {pid}'s view:\n{mounts}");
    }
    let state =
        env.run("lct-inventory", &["exec", "--cluster", "m", "-o", "jsonl", "--", "systemctl", "is-system-running"]);
    assert_eq!(state.json_lines().len(), 3, "{}\n{}", state.stdout, state.stderr);
    for line in state.json_lines() {
        let s = line["stdout"].as_str().unwrap().trim();
        assert!(s == "running" || s == "degraded", "{line}");
    }
    let ran = env
        .run("lct-inventory", &["exec", "--cluster", "m", "-o", "jsonl", "--", "cat", "/etc/lct-user-data-ran"])
        .ok();
    assert_eq!(ran.json_lines().len(), 3);
    for line in ran.json_lines() {
        assert_eq!(line["stdout"], "ran\n", "{line}");
    }
    let marker = format!("/etc/lct-test-{}", env.lab);
    let ssh0 = ssh_args(&env, &nodes[0]);
    let mut write = ssh0.clone();
    write.push(format!("echo mine > {marker}"));
    assert_eq!(ip(&write).status, 0);
    for n in &nodes[1..] {
        let mut check = ssh_args(&env, n);
        check.push(format!("test ! -e {marker}"));
        assert_eq!(ip(&check).status, 0, "{marker} leaked into {}", n["name"]);
    }
    assert!(!std::path::Path::new(&marker).exists(), "{marker} leaked onto the host");

    // No password logins: publickey is the only method sshd offers.
    let mut password = ssh0.clone();
    password.splice(password.len() - 1..password.len() - 1, ["-o".into(), "PubkeyAuthentication=no".into()]);
    password.push("true".into());
    let refused = ip(&password);
    assert_ne!(refused.status, 0);
    assert!(refused.stderr.contains("Permission denied (publickey)"), "{}", refused.stderr);

    // A wrong host key is refused: lct's known_hosts pins exactly the key lct made.
    let known = env.state.path().join("ssh/known_hosts");
    let original = std::fs::read_to_string(&known).unwrap();
    let other = lct_core::ssh::generate_key("impostor").unwrap();
    let name = nodes[0]["name"].as_str().unwrap();
    let forged: String = original
        .lines()
        .map(|l| {
            if l.split(',').next() == Some(name) {
                format!("{} {}\n", l.split(' ').next().unwrap(), other.public)
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&known, forged).unwrap();
    let out = env.run("lct-inventory", &["exec", "--cluster", "m", "-o", "jsonl", "--", "true"]);
    assert_ne!(out.status, 0);
    assert!(
        out.stdout.contains("Host key verification failed") || out.stdout.contains("REMOTE HOST IDENTIFICATION"),
        "{}",
        out.stdout
    );
    std::fs::write(&known, original).unwrap();

    // A volume is a block device inside the machine, at Linode's path.
    env.run("lct-api", &["volume", "create", "data", "--size", "8M", "--attach", name]).ok();
    let listed = env.run("lct-api", &["get", name, "-o", "jsonl"]).ok().json_lines();
    let path = listed[0]["volumes"][0]["path"].as_str().unwrap().to_string();
    assert_eq!(path, "/dev/disk/by-id/scsi-0Linode_Volume_data");
    let mut write_volume = ssh0.clone();
    write_volume.push(format!("test -b {path} && printf lct-volume | dd of={path} conv=fsync status=none"));
    assert_eq!(ip(&write_volume).status, 0, "{}", ip(&write_volume).stderr);
    let backing = env.state.path().join("local/volumes/data.img");
    assert_eq!(&std::fs::read(&backing).unwrap()[..10], b"lct-volume");
    env.run("lct-api", &["volume", "detach", "data"]).ok();
    let mut gone = ssh0.clone();
    gone.push(format!("test ! -e {path}"));
    assert_eq!(ip(&gone).status, 0, "a detached volume is still in the machine");
    env.run("lct-api", &["volume", "attach", "data", name]).ok();

    // Stop and start: the machine goes away and comes back, the same machine.
    env.run("lct-api", &["stop", name]).ok();
    let mut probe = ssh0.clone();
    probe.push(format!("cat {marker}"));
    assert_ne!(ip(&probe).status, 0, "a stopped machine answered");
    env.run("lct-api", &["start", name]).ok();
    assert_eq!(ip(&probe).stdout.trim(), "mine");
    // Its volume comes back with it.
    let mut read_volume = ssh0.clone();
    read_volume.push(format!("head -c 10 {path}"));
    assert_eq!(ip(&read_volume).stdout, "lct-volume");

    // lab down: no container, no overlay, no namespace of this test is left.
    lab_down_leaves_nothing(&env);
}

#[test]
#[ignore = "needs root: network namespaces, overlays and systemd-nspawn (scripts/test runs it as root)"]
fn machines_install_from_the_mirror_run_ansible_and_take_pushes_over_ssh() {
    let env = Env::new();
    let mut nodes = env
        .run("lct-api", &["create", "--cluster", "m", "--count", "2", "--image", "debian-12", "-o", "jsonl"])
        .ok()
        .json_lines();
    // Records come as machines are ready, not in input order.
    nodes.sort_by_key(|n| n["name"].as_str().unwrap().to_string());
    assert_eq!(nodes.len(), 2);
    let ssh0 = ssh_args(&env, &nodes[0]);
    let on = |node: usize, cmd: &str| {
        let mut argv = ssh_args(&env, &nodes[node]);
        argv.push(cmd.to_string());
        ip(&argv)
    };

    // No route out; packages come from the lab's mirror all the same.
    assert_eq!(on(0, "ip route show default").stdout.trim(), "", "a machine has a default route");
    env.run("lct-api", &["lab", "packages", "add", "zookeeperd"]).ok();
    let installed = on(
        0,
        "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq zookeeperd >/dev/null && ls /usr/share/zookeeper/bin/zkServer.sh",
    );
    assert_eq!(installed.status, 0, "{}\n{}", installed.stdout, installed.stderr);
    assert_ne!(on(1, "test -e /usr/share/zookeeper").status, 0, "installed on one machine, present on another");
    drop(ssh0);

    // Ansible over SSH with lct's pinned keys, through the inventory lct-inventory prints.
    let inventory = env.state.path().join("inventory");
    std::fs::write(
        &inventory,
        format!(
            "#!/bin/sh\nexec env LCT_STATE_DIR={} LCT_LAB={} {} ansible --cluster m \"$@\"\n",
            env.state.path().display(),
            env.lab,
            lct_tests::bin("lct-inventory").display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&inventory, std::fs::Permissions::from_mode(0o755)).unwrap();
    let playbook = env.state.path().join("site.yml");
    std::fs::write(
        &playbook,
        "- hosts: m\n  gather_facts: false\n  tasks:\n    - copy:\n        content: \"{{ inventory_hostname }} {{ lct_private_ipv4[0] }}\\n\"\n        dest: /etc/lct-ansible\n",
    )
    .unwrap();
    // Output to a file, not a pipe: Ansible's shared SSH connection outlives the command and
    // would hold a pipe open.
    let log = env.state.path().join("ansible.log");
    let status = Command::new("ansible-playbook")
        .arg("-i")
        .arg(&inventory)
        .arg(&playbook)
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_LOCAL_TEMP", env.state.path().join("ansible-tmp"))
        .env("ANSIBLE_SSH_CONTROL_PATH_DIR", env.state.path().join("ansible-cp"))
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(&log).unwrap())
        .status()
        .unwrap();
    assert!(status.success(), "{}", std::fs::read_to_string(&log).unwrap_or_default());
    for (i, n) in nodes.iter().enumerate() {
        let want = format!("{} {}", n["name"].as_str().unwrap(), n["private_ipv4"][0].as_str().unwrap());
        assert_eq!(on(i, "cat /etc/lct-ansible").stdout.trim(), want);
    }

    // lct's node-side programs, copied and checked; then pushes run them over SSH.
    // A node without conntrack (lct-fw needs it) gets it from apt, here the lab's mirror
    // (which install fills with what the node-side programs need).
    let removed = on(1, "dpkg -r conntrack >/dev/null 2>&1 && ! command -v conntrack");
    assert_eq!(removed.status, 0, "{}", removed.stderr);
    let results = env.run("lct-inventory", &["install", "--cluster", "m", "-o", "jsonl"]).ok().json_lines();
    let needs: Vec<(String, String)> = results
        .iter()
        .filter(|r| {
            r["stdout"].as_str().unwrap().starts_with(['p', 'i'])
                && !r["stdout"].as_str().unwrap().starts_with("installed\n")
        })
        .map(|r| (r["node"].as_str().unwrap().to_string(), r["stdout"].as_str().unwrap().trim().to_string()))
        .collect();
    assert_eq!(
        needs,
        [
            // wg and wireguard-go (lct-mesh's: the machines' kernel has no WireGuard) on both.
            ("m-1".to_string(), "installed wireguard-tools wireguard-go".to_string()),
            ("m-2".to_string(), "installed conntrack wireguard-tools wireguard-go".to_string())
        ]
    );
    assert_eq!(on(1, "command -v conntrack").status, 0);
    assert_eq!(on(1, "lct-hosts --version").status, 0);
    // With lct-dns's unit, installed but not enabled.
    assert_eq!(
        on(1, "grep -c '^ExecStart=/usr/local/bin/lct-dns serve' /etc/systemd/system/lct-dns.service").stdout,
        "1\n"
    );
    assert_ne!(on(1, "systemctl is-enabled lct-dns").stdout.trim(), "enabled");
    env.run("lct-inventory", &["clusters", "set", "m", "--domain", "m.lct.internal"]).ok();
    env.run("lct-hosts", &["push", "--cluster", "m"]).ok();
    let peer = on(0, "getent hosts m-2.m.lct.internal");
    assert_eq!(peer.stdout.split_whitespace().next(), nodes[1]["private_ipv4"][0].as_str(), "{}", peer.stderr);

    // A firewall pushed over SSH: default-deny, SSH from the outside (the admin network) only.
    let public = nodes[1]["public_ipv4"][0].as_str().unwrap().to_string();
    let serve = "nohup python3 -m http.server 8080 >/dev/null 2>&1 & \
                 for i in $(seq 100); do python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", 8080), 1)' 2>/dev/null && exit 0; sleep 0.05; done; exit 1";
    assert_eq!(on(1, serve).status, 0, "the web server does not start");
    let outside = format!("{}-outside", env.lab);
    let reaches = |port: &str| {
        Command::new("ip")
            .args(["netns", "exec", &outside, "nc", "-z", "-w", "2", &public, port])
            .status()
            .unwrap()
            .success()
    };
    assert!(reaches("8080"), "the web server is not reachable before the firewall");
    env.run(
        "lct-fw",
        &[
            "declare",
            "m",
            "--mode",
            "default-deny",
            "--admin-cidr",
            "203.0.113.254/32",
            "--allow",
            "self->*:2888-3888/tcp",
        ],
    )
    .ok();
    env.run("lct-fw", &["push", "--cluster", "m"]).ok();
    assert!(!reaches("8080"), "default-deny let the outside in on 8080");
    assert!(reaches("22"), "the admin network lost SSH");
    env.run("lct-api", &["lab", "down"]).ok();
    // Ansible's shared connections end with the nodes' (within ServerAlive's 15 s).
    let _ = Command::new("pkill").args(["-f", &format!("{}/ansible-cp", env.state.path().display())]).status();
}

#[test]
#[ignore = "needs root: network namespaces, overlays and systemd-nspawn (scripts/test runs it as root)"]
fn the_linode_double_backed_by_machines_boots_instances_that_answer_ssh_where_the_api_says() {
    let env = Env::new();
    // The double as its own process, backed by this test's local cloud.
    let (_double, url) = env.linode_double_backed_by_machines("backed");
    let linode = |args: &[&str]| {
        let mut cmd = env.command("lct-api", args);
        cmd.env("LINODE_URL", &url)
            .env("LINODE_TOKEN", "backed")
            .env("LCT_LINODE_POLL", "0.05")
            .env("HOME", env.state.path());
        Run::from(cmd.stdin(std::process::Stdio::null()).output().unwrap())
    };
    let made = linode(&["-p", "linode", "create", "--cluster", "web", "--count", "2", "-o", "jsonl"]).ok();
    let mut nodes = made.json_lines();
    nodes.sort_by_key(|n| n["name"].as_str().unwrap().to_string());
    assert_eq!(nodes.len(), 2, "{}", made.stdout);
    let mut hostname = Vec::new();
    for n in &nodes {
        // The address the API reports is the machine's; the first boot was the user-data the
        // API was sent (the host key lct made for it, pinned before this first connection).
        let mut access = n["access"].clone();
        access["netns"] = serde_json::json!(format!("{}-outside", env.lab));
        let probe = serde_json::json!({ "access": access });
        let mut argv = ssh_args(&env, &probe);
        argv.push("cloud-init status --wait >/dev/null; hostname".into());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        let answer = loop {
            let out = ip(&argv);
            if out.status == 0 || std::time::Instant::now() > deadline {
                break out;
            }
            std::thread::sleep(std::time::Duration::from_millis(300));
        };
        assert_eq!(answer.stdout.trim(), n["name"].as_str().unwrap(), "{}", answer.stderr);
        argv.pop();
        argv.push("hostname".into());
        hostname.push(argv);
    }
    // Shutdown and delete act on the machines: web-1's backing machine stops (SSH no longer
    // answers), web-2's runs on (and answers).
    linode(&["-p", "linode", "stop", "web-1"]).ok();
    let within = std::time::Duration::from_secs(60);
    lct_tests::fixtures::until("web-1's machine stops answering", within, || ip(&hostname[0]).status != 0);
    assert_eq!(ip(&hostname[1]).stdout.trim(), "web-2", "web-2 stopped with web-1");
    linode(&["-p", "linode", "delete", "web-1", "web-2"]).ok();
    assert!(env.run("lct-api", &["list", "-o", "jsonl"]).ok().stdout.trim().is_empty(), "backing machines left");
}

#[test]
#[ignore = "needs root: network namespaces, overlays and systemd-nspawn (scripts/test runs it as root)"]
fn a_machine_create_killed_half_way_is_finished_by_the_next_run() {
    let env = Env::new();
    let args = ["create", "--cluster", "c", "--count", "1", "--image", "debian-12", "-o", "jsonl"];
    let mut crashing = env.command("lct-api", &args);
    crashing.env("LCT_LOCAL_CRASH_AFTER", "node-recorded").stdin(std::process::Stdio::null());
    let crashed = Run::from(crashing.output().unwrap());
    assert_ne!(crashed.status, 0, "the create did not crash");
    // Recorded, not made: the next run makes it (once) and waits until it answers.
    let again = env.run("lct-api", &args).ok().json_lines();
    assert_eq!((again.len(), again[0]["status"].as_str()), (1, Some("running")), "{again:?}");
    let hostname = env.run("lct-inventory", &["exec", "--cluster", "c", "-o", "jsonl", "--", "hostname"]).ok();
    assert_eq!(hostname.json_lines()[0]["stdout"], "c-1\n");
    let listed = env.run("lct-api", &["list", "-o", "jsonl"]).ok().json_lines();
    assert_eq!(listed.len(), 1);

    // A user-data that fails: the create fails at once (not after minutes of waiting),
    // naming cloud-init's error.
    let failing = env.state.path().join("fail.sh");
    std::fs::write(&failing, "#!/bin/sh\nexit 3\n").unwrap();
    let started = std::time::Instant::now();
    let bad = env.run(
        "lct-api",
        &[
            "create",
            "--cluster",
            "bad",
            "--count",
            "1",
            "--image",
            "debian-12",
            "--user-data",
            failing.to_str().unwrap(),
        ],
    );
    assert_ne!(bad.status, 0, "a failed first boot was reported ready");
    assert!(
        bad.stderr.contains("cloud-init finished with errors") && bad.stderr.contains("scripts_user"),
        "{}",
        bad.stderr
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(90), "took {:?}", started.elapsed());

    // The state file lost (or restored from before the machine): lab down still stops the
    // machines and removes their overlays. Their supervisors killed too (an OOM kill, a
    // harness's pkill): nothing is left to remove the machines' own cgroups but the removal.
    std::fs::remove_file(env.state.path().join("local/cloud.json")).unwrap();
    let supervisors = format!("lab run-machine --state-dir={}", env.state.path().display());
    assert!(Command::new("pkill").args(["-KILL", "-f", &supervisors]).status().unwrap().success(), "no supervisor");
    lab_down_leaves_nothing(&env);
}

/// The files under / (but /proc, /sys and /dev, and `skip`) that `user`:`group` can read and
/// that hold `pattern` (`grep KIND`: -F a string, -E a pattern), searched on a node.
fn readable_files_with(
    env: &Env,
    node: &str,
    (user, group): (&str, &str),
    (kind, pattern): (&str, &str),
    skip: &[&str],
) -> Vec<String> {
    let prune: String = ["/proc", "/sys", "/dev"].iter().chain(skip).map(|p| format!(" -o -path {p}")).collect();
    let search = format!(
        "find / \\( -false{prune} \\) -prune -o -type f -readable -print0 2>/dev/null | xargs -0 -r grep -l {kind} -e '{pattern}' 2>/dev/null"
    );
    let as_user = format!("setpriv --reuid={user} --regid={group} --clear-groups sh -c \"{search}\"; true");
    env.ssh(node, &as_user).ok().stdout.lines().map(str::to_string).collect()
}

#[test]
#[ignore = "needs root: network namespaces, overlays and systemd-nspawn (scripts/test runs it as root)"]
fn a_machine_keeps_its_keys_from_users_and_its_firewall_from_tampering() {
    let env = Env::new();
    env.run("lct-api", &["create", "--cluster", "k", "--count", "1", "--image", "debian-12"]).ok();
    const ROOT: (&str, &str) = ("root", "root");
    const NOBODY: (&str, &str) = ("nobody", "nogroup");
    // The node's own secret: its SSH host key, which lct put in its user-data. A line of the
    // key's private part, wherever it was copied (the seed, cloud-init's copies of the
    // user-data and its pickled data source under /var/lib/cloud, its logs, /run/cloud-init),
    // in plain or JSON-escaped text: root finds the key and the seed (the search works)...
    let secret = env.ssh("k-1", "sed -n 4p /etc/ssh/ssh_host_ed25519_key").ok().stdout.trim().to_string();
    assert!(secret.len() >= 60, "{secret:?}");
    let roots = readable_files_with(&env, "k-1", ROOT, ("-F", &secret), &[]);
    for expected in ["/etc/ssh/ssh_host_ed25519_key", "/var/lib/cloud/seed/nocloud/user-data"] {
        assert!(roots.iter().any(|f| f == expected), "root's search misses {expected}: {roots:?}");
    }
    // ...and a user finds none.
    let users = readable_files_with(&env, "k-1", NOBODY, ("-F", &secret), &[]);
    assert!(users.is_empty(), "files nobody reads that hold the node's host key: {users:?}");
    // Nor any other private key outside the packaged software (whose programs, libraries,
    // sources and examples name PEM headers, and one example key in cloud-init's docs).
    let pem = "-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----";
    let software = ["/usr/bin", "/usr/sbin", "/usr/lib", "/usr/share", "/var/lib/lct-mirror"];
    let roots = readable_files_with(&env, "k-1", ROOT, ("-E", pem), &software);
    assert!(roots.iter().any(|f| f == "/etc/ssh/ssh_host_ed25519_key"), "{roots:?}");
    let users = readable_files_with(&env, "k-1", NOBODY, ("-E", pem), &software);
    assert!(users.is_empty(), "files nobody reads that hold a private key: {users:?}");

    // From the first boot, before lct-fw is on the node: the metadata service is root's
    // (cloud-init's bootcmd). Served on the node itself at the metadata address, it answers
    // root (so the address works) and refuses nobody.
    let guard = env.ssh("k-1", "nft list table inet lct").ok().stdout;
    assert!(guard.contains("169.254.169.254") && guard.contains("skuid != 0"), "{guard}");
    let serve = "ip addr add 169.254.169.254/32 dev lo; \
                 (python3 -m http.server -b 169.254.169.254 80 </dev/null >/dev/null 2>&1 &); \
                 for i in $(seq 100); do python3 -c 'import socket; socket.create_connection((\"169.254.169.254\", 80), 1)' 2>/dev/null && exit 0; sleep 0.05; done; exit 1";
    assert_eq!(env.ssh("k-1", serve).status, 0, "the stand-in metadata service answers root");
    let as_nobody = "setpriv --reuid=nobody --regid=nogroup --clear-groups python3 -c \
                     'import socket; socket.create_connection((\"169.254.169.254\", 80), 2)'";
    let refused = env.ssh("k-1", as_nobody);
    assert_ne!(refused.status, 0, "nobody reached the metadata service at first boot");
    assert!(refused.stderr.contains("timed out"), "dropped, not refused: {}", refused.stderr);

    // `lct-inventory install` starts lct-fw-watch, which owns the table (the host's kernel,
    // 6.9+): a push goes through it, a flush passes the table by and a delete is refused.
    env.run("lct-inventory", &["install", "--cluster", "k"]).ok();
    assert_eq!(env.ssh("k-1", "systemctl is-enabled lct-fw-watch").stdout.trim(), "enabled");
    env.run("lct-fw", &["declare", "k", "--admin-cidr", "203.0.113.254/32", "--allow", "self->*:2888/tcp"]).ok();
    env.run("lct-fw", &["push", "--cluster", "k"]).ok();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while env.ssh("k-1", "journalctl -u lct-fw-watch | grep -q 'watching table inet lct'").status != 0 {
        assert!(std::time::Instant::now() < deadline, "lct-fw-watch did not start");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // The pushed table replaced the first boot's guard and keeps its rules.
    let pushed = env.ssh("k-1", "nft list table inet lct").ok().stdout;
    assert!(pushed.contains("chain input") && pushed.contains("metadata: root only"), "{pushed}");
    assert_ne!(env.ssh("k-1", as_nobody).status, 0, "nobody reached the metadata service after the push");
    let applied = env.ssh("k-1", "nft list table inet lct").ok().stdout;
    assert!(applied.contains("flags owner"), "{applied}");
    let after = env.ssh("k-1", "nft flush ruleset && nft list table inet lct").ok().stdout;
    assert_eq!(after, applied, "the flush passed the table by");
    assert_ne!(env.ssh("k-1", "nft delete table inet lct").status, 0, "deleted past the service");
    let journal = env.ssh("k-1", "journalctl -u lct-fw-watch -o cat").ok().stdout;
    assert!(journal.contains("is this process's own"), "{journal}");
    lab_down_leaves_nothing(&env);
}
