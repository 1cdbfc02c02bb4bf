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

#[test]
#[ignore = "needs root: network namespaces, overlays and systemd-nspawn (scripts/test runs it as root)"]
fn a_machine_cluster_boots_answers_ssh_with_pinned_keys_only_and_leaves_nothing() {
    let env = Env::new();
    let created =
        env.run("lct-api", &["create", "--cluster", "m", "--count", "3", "--image", "debian-12", "-o", "jsonl"]).ok();
    let nodes = created.json_lines();
    assert_eq!(nodes.len(), 3, "{}", created.stdout);
    for n in &nodes {
        assert_eq!(n["status"], "running", "{n}");
        assert_eq!(n["access"]["method"], "ssh", "{n}");
    }

    // Each machine is itself: its host name, a booted systemd, its own /etc.
    let hostnames = env.run("lct-inventory", &["exec", "--cluster", "m", "-o", "jsonl", "--", "hostname"]).ok();
    for line in hostnames.json_lines() {
        assert_eq!(line["stdout"].as_str().unwrap().trim(), line["node"].as_str().unwrap(), "{line}");
    }
    let state =
        env.run("lct-inventory", &["exec", "--cluster", "m", "-o", "jsonl", "--", "systemctl", "is-system-running"]);
    for line in state.json_lines() {
        let s = line["stdout"].as_str().unwrap().trim();
        assert!(s == "running" || s == "degraded", "{line}");
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

    // Stop and start: the machine goes away and comes back, the same machine.
    env.run("lct-api", &["stop", name]).ok();
    let mut probe = ssh0.clone();
    probe.push(format!("cat {marker}"));
    assert_ne!(ip(&probe).status, 0, "a stopped machine answered");
    env.run("lct-api", &["start", name]).ok();
    assert_eq!(ip(&probe).stdout.trim(), "mine");

    // lab down: no container, no overlay, no namespace of this test is left.
    env.run("lct-api", &["lab", "down"]).ok();
    let state_dir = env.state.path().display().to_string();
    let procs = Command::new("pgrep").args(["-f", &format!("systemd-nspawn.*{state_dir}")]).output().unwrap();
    assert!(procs.stdout.is_empty(), "containers left: {}", String::from_utf8_lossy(&procs.stdout));
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&state_dir), "mounts left under {state_dir}");
    assert!(env.namespaces().is_empty(), "namespaces left: {:?}", env.namespaces());
}
