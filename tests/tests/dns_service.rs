//! lct-dns as a service: readiness on NOTIFY_SOCKET, reload on SIGHUP (a bad zone keeps the
//! old one serving), the configuration file, and the systemd unit shipped in the repository.

use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use lct_tests::Env;

const NODE: &str = r#"{"kind":"node","v":1,"cluster":"zk","group":"zookeeper","name":"zk-1","provider":"local","status":"running","private_ipv4":["192.168.128.1"],"public_ipv4":["203.0.113.1"]}"#;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn records(env: &Env, nodes: &str) -> String {
    env.run_with_input("lct-dns", &["zone", "--domain", "lct.internal", "--serial", "1"], nodes).ok().stdout
}

fn ask(port: u16, name: &str) -> String {
    let out = Command::new("dig")
        .args(["-b", "127.0.0.2", "@127.0.0.1", "-p", &port.to_string(), "+time=1", "+tries=1", "+short", name, "A"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn ready_reload_and_bad_reloads() {
    let env = Env::new();
    let dir = env.state.path();
    std::fs::write(dir.join("zones.jsonl"), records(&env, NODE)).unwrap();
    let port = lct_tests::free_port();
    let config = format!(
        "records = \"{}\"\nlisten = [\"127.0.0.1:{port}\"]\ninternal = [\"127.0.0.2/32\"]\nudp_sockets = 2\n",
        dir.join("zones.jsonl").display()
    );
    std::fs::write(dir.join("dns.toml"), &config).unwrap();
    let notify = dir.join("notify.sock");
    let listener = UnixDatagram::bind(&notify).unwrap();
    listener.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let server = Server(
        Command::new(lct_tests::bin("lct-dns"))
            .args(["serve", "--config", dir.join("dns.toml").to_str().unwrap()])
            .env("NOTIFY_SOCKET", &notify)
            .env("LCT_STATE_DIR", env.state.path())
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut buf = [0u8; 64];
    let n = lct_tests::uninterrupted(|| listener.recv(&mut buf)).expect("a READY notification");
    assert_eq!(&buf[..n], b"READY=1");
    // Ready means the sockets are bound: the first query is answered.
    assert_eq!(ask(port, "zk-1.zk.lct.internal"), "192.168.128.1");

    // A new node, then SIGHUP: served without a restart.
    let two = format!("{NODE}\n{}\n", NODE.replace("zk-1", "zk-2").replace(".128.1\"", ".128.2\""));
    std::fs::write(dir.join("zones.jsonl"), records(&env, &two)).unwrap();
    let pid = server.0.id().to_string();
    Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    let n = lct_tests::uninterrupted(|| listener.recv(&mut buf)).unwrap();
    assert_eq!(&buf[..n], b"RELOADING=1");
    let n = lct_tests::uninterrupted(|| listener.recv(&mut buf)).unwrap();
    assert_eq!(&buf[..n], b"READY=1");
    assert_eq!(ask(port, "zk-2.zk.lct.internal"), "192.168.128.2");

    // A broken zone file on reload: refused, the previous zones serve on.
    std::fs::write(dir.join("zones.jsonl"), "{\"kind\":\"dns-record\",\"zone\":\"x.\"}\n").unwrap();
    Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    let _ = lct_tests::uninterrupted(|| listener.recv(&mut buf));
    let _ = lct_tests::uninterrupted(|| listener.recv(&mut buf));
    assert_eq!(ask(port, "zk-2.zk.lct.internal"), "192.168.128.2");
    // And a broken configuration.
    std::fs::write(dir.join("dns.toml"), "listen = [\"not an address\"]\n").unwrap();
    Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    let _ = lct_tests::uninterrupted(|| listener.recv(&mut buf));
    let _ = lct_tests::uninterrupted(|| listener.recv(&mut buf));
    assert_eq!(ask(port, "zk-1.zk.lct.internal"), "192.168.128.1");

    let mut server = server;
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let n = lct_tests::uninterrupted(|| listener.recv(&mut buf)).unwrap();
    assert_eq!(&buf[..n], b"STOPPING=1");
    let status = server.0.wait().unwrap();
    assert!(status.success(), "a clean stop on SIGTERM");
    let mut log = String::new();
    use std::io::Read;
    server.0.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    assert!(log.contains("reload refused, still serving the previous zones"), "{log}");
    assert!(log.contains("zones.jsonl: line 1: field name: missing"), "the bad zone is named: {log}");
    assert!(log.contains("dns.toml"), "the bad configuration is named: {log}");
}

#[test]
fn a_bad_configuration_is_named_at_start() {
    let env = Env::new();
    let file = env.state.path().join("dns.toml");
    std::fs::write(&file, "records = \"/nowhere\"\nlisten = [\"127.0.0.1:53\"]\ninternal = [\"10.0.0.0/99\"]\n")
        .unwrap();
    let out = env.run("lct-dns", &["serve", "--config", file.to_str().unwrap()]);
    assert_eq!(out.status, 1);
    assert!(out.stderr.contains("dns.toml: internal: \"10.0.0.0/99\""), "{}", out.stderr);
    std::fs::write(&file, "records = \"/x\"\nlisten = [\"127.0.0.1:53\"]\nbogus = 1\n").unwrap();
    let out = env.run("lct-dns", &["serve", "--config", file.to_str().unwrap()]);
    assert_eq!(out.status, 1);
    assert!(out.stderr.contains("line 3") && out.stderr.contains("bogus"), "{}", out.stderr);
    // A field of a table array is named with the file too.
    let key = env.state.path().join("xfr.key");
    env.run("lct-dns", &["keygen", "xfr", "--out", key.to_str().unwrap()]).ok();
    let none = env.state.path().join("none.jsonl");
    std::fs::write(&none, "").unwrap();
    let config = format!(
        "records = \"{}\"\nlisten = [\"127.0.0.1:53\"]\n[[secondary]]\nkey = \"xfr.key\"\nview = \"internal\"\nallow = [\"10.0.0.0/99\"]\n",
        none.display()
    );
    std::fs::write(&file, config).unwrap();
    let out = env.run("lct-dns", &["serve", "--config", file.to_str().unwrap()]);
    assert_eq!(out.status, 1);
    assert!(out.stderr.contains("dns.toml: secondary[0].allow: \"10.0.0.0/99\""), "{}", out.stderr);
}

#[test]
fn the_systemd_unit_verifies() {
    let env = Env::new();
    let unit =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../packaging/systemd/lct-dns.service")).unwrap();
    assert!(unit.contains("Type=notify") && unit.contains("ExecReload=/bin/kill -HUP $MAINPID"));
    assert!(unit.contains("AmbientCapabilities=CAP_NET_BIND_SERVICE") && unit.contains("ProtectSystem=strict"));
    // systemd-analyze checks that ExecStart exists: point it at the binary just built. (Its
    // man page is checked by scripts/install's output, not here: --man=no.)
    let local = unit.replace("/usr/local/bin/lct-dns", lct_tests::bin("lct-dns").to_str().unwrap());
    let path = env.state.path().join("lct-dns.service");
    std::fs::write(&path, local).unwrap();
    let out = Command::new("systemd-analyze").args(["verify", "--man=no", path.to_str().unwrap()]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ours: Vec<&str> = stderr.lines().filter(|l| l.contains("lct-dns.service")).collect();
    assert!(out.status.success() && ours.is_empty(), "systemd-analyze verify:\n{stderr}");
}
