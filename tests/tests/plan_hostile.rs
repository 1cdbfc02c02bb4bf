//! Hostile plans (issue 21, items 1, 2 and 8): a plan cannot smuggle commands through its
//! values, its templates are bounded, and secrets never reach a command line.

use std::time::{Duration, Instant};

use lct_tests::{Env, Run};

fn write(env: &Env, file: &str, text: &str) -> String {
    let path = env.state.path().join(file);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// Nothing of cluster `name` was written: no plan state, no cluster record; `scale` cannot
/// finish it.
fn nothing_written(env: &Env, name: &str) {
    assert!(!env.state.path().join("plans").join(name).exists(), "state of {name} written");
    assert!(env.run("lct-inventory", &["clusters", "list", "-o", "jsonl"]).ok().stdout.trim().is_empty());
    let scale = env.run("lct-plan", &["scale", name, "node", "2"]);
    assert_eq!(scale.status, 1);
    assert!(scale.stderr.contains(&format!("cluster {name} was not made by lct-plan here")), "{}", scale.stderr);
}

#[test]
fn package_names_that_are_options_or_shell_are_refused_for_every_provider_before_anything_is_written() {
    let env = Env::new();
    let marker = env.state.path().join("pwned");
    let attacks = [
        format!("-oAPT::Update::Pre-Invoke::=touch {}", marker.display()),
        format!("htop; touch {}", marker.display()),
        format!("htop=1.0 $(touch {})", marker.display()),
    ];
    for attack in &attacks {
        let plan = write(
            &env,
            "p.yaml",
            &format!(
                "description: x\ngroups:\n  node: {{count: 1, image: lct/netns}}\npackages: [htop, {attack:?}]\nhooks:\n  created:\n    - action: packages\n"
            ),
        );
        let out = env.run("lct-plan", &["validate", &plan]);
        assert_eq!(out.status, 1, "{attack}: {}", out.stderr);
        assert!(
            out.stderr
                .contains(&format!("{plan}: line 4, column 18: field packages[1]: {attack:?} is not a Debian package")),
            "{attack}: {}",
            out.stderr
        );
        for provider in ["local", "linode"] {
            let out = env.run("lct-plan", &["create", "bad", &plan, "-p", provider]);
            assert_eq!(out.status, 1, "{provider}: {}", out.stderr);
            assert!(out.stderr.contains("packages[1]"), "{provider}: {}", out.stderr);
            nothing_written(&env, "bad");
        }
        // The lab's mirror refuses it too (one grammar, in lct-core).
        let out = env.run("lct-api", &["lab", "packages", "add", "--", attack]);
        assert_ne!(out.status, 0);
        assert!(out.stderr.contains("is not a Debian package"), "{}", out.stderr);
    }
    assert!(!marker.exists(), "an attack ran");
}

#[test]
fn a_remote_plan_whose_packages_action_runs_on_nodes_needs_a_pin_or_trust() {
    let env = Env::new();
    let dir = env.state.path().join("served");
    std::fs::create_dir_all(&dir).unwrap();
    let text = "description: served\ngroups:\n  node: {count: 1, image: lct/netns}\npackages: [htop]\nhooks:\n  created:\n    - action: packages\n";
    std::fs::write(dir.join("p.yaml"), text).unwrap();
    let server = lct_tests::HttpFiles::serve(&dir);
    let url = server.url("p.yaml");
    let out = env.run("lct-plan", &["create", "--allow-http", "remote", &url]);
    assert_eq!(out.status, 1);
    assert!(
        out.stderr.contains(
            "without a #sha256= pin runs no shell hooks, playbooks or `packages` actions unless --trust-hooks"
        ),
        "{}",
        out.stderr
    );
    nothing_written(&env, "remote");
}

/// A template that never ends and one that renders megabytes: `validate`, `diff` and
/// `create` each fail within 2 s, naming the file, line, column and field.
#[test]
fn templates_that_loop_for_ever_or_render_megabytes_fail_fast_naming_the_place() {
    let env = Env::new();
    let cases = [
        (
            "count: \"{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}1\"",
            "line 4, column 12: field groups.node.count: template: takes more than",
        ),
        (
            "count: \"{% for i in range(1000000000) %}x{% endfor %}\"",
            "line 4, column 12: field groups.node.count: template:",
        ),
        (
            "count: 1\n    hostname: \"{{ 'x' * 90000000 }}\"",
            "line 5, column 15: field groups.node.hostname: template: renders more than 256 KiB",
        ),
        // Within the budget of steps, but billions of names to render and nodes to ask for.
        ("count: 4000000000", "line 4, column 12: field groups.node.count: 4000000000 nodes, over the 1000"),
        ("count: \"{{ 2000000 }}\"", "line 4, column 12: field groups.node.count: 2000000 nodes, over the 1000"),
    ];
    for (field, want) in cases {
        let plan =
            write(&env, "p.yaml", &format!("description: x\ngroups:\n  node:\n    {field}\n    image: lct/netns\n"));
        for args in [
            vec!["validate", plan.as_str()],
            vec!["diff", "loop", "--plan", plan.as_str()],
            vec!["create", "loop", plan.as_str()],
        ] {
            // Bounded in CPU (what the budget of steps promises, whatever the machine's load)
            // and, loosely, in wall time (nothing waits for ever either).
            let started = Instant::now();
            let (out, cpu) = env.run_cpu_timed("lct-plan", &args);
            let took = started.elapsed();
            assert_eq!(out.status, 1, "{args:?}: {}", out.stderr);
            assert!(cpu < Duration::from_secs(2), "{args:?} used {cpu:?} of CPU");
            assert!(took < Duration::from_secs(20), "{args:?} took {took:?}");
            assert!(out.stderr.contains(&format!("{plan}: {want}")), "{args:?}: {}", out.stderr);
        }
        nothing_written(&env, "loop");
    }
    // An offered value (rendered over the inventory) is bounded too.
    let plan = write(
        &env,
        "p.yaml",
        "description: x\ngroups:\n  node: {count: 2, image: lct/netns}\noffers:\n  all: \"{% for n in nodes.node %}{% for i in range(100000) %}{{ n.name }}{% endfor %}{% endfor %}\"\n",
    );
    let out = env.run("lct-plan", &["validate", &plan]);
    assert!(
        out.stderr.contains(&format!("{plan}: line 5, column 8: field offers.all: template: renders more")),
        "{}",
        out.stderr
    );
}

#[test]
fn secrets_come_from_files_or_standard_input_and_set_warns() {
    let env = Env::new();
    let plan = write(
        &env,
        "p.yaml",
        "description: x\nparameters:\n  pw: {type: string, secret: true, description: a password}\n  n: {type: integer, default: 1, description: a count}\ngroups:\n  node: {count: \"{{ n }}\", image: lct/netns}\n",
    );
    let secret = "correct-horse-battery-staple";
    let file = write(&env, "pw", &format!("{secret}\n"));
    let out = env.run("lct-plan", &["validate", &plan, "--set-file", &format!("pw={file}")]).ok();
    assert!(!out.stderr.contains("warning"), "{}", out.stderr);
    env.run_with_input("lct-plan", &["validate", &plan, "--set-file", "pw=-"], secret).ok();
    let out = env.run("lct-plan", &["validate", &plan, "--set", &format!("pw={secret}")]).ok();
    assert!(
        out.stderr.contains("secret parameter pw given with --set: its value is on the command line, visible to every local user in `ps`; give it with --set-file pw=PATH"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains(secret), "{}", out.stderr);
    // A file that is not there is a usage error naming it, and nothing else.
    let out = env.run("lct-plan", &["validate", &plan, "--set-file", "pw=/nonexistent/pw"]);
    assert_eq!(out.status, 2, "{}", out.stderr);
    assert!(out.stderr.contains("--set-file pw=/nonexistent/pw"), "{}", out.stderr);
    // An integer from a file is checked like one from --set, and its value not shown if secret.
    let bad = write(&env, "n", "many\n");
    let out = env
        .run("lct-plan", &["validate", &plan, "--set-file", &format!("pw={file}"), "--set-file", &format!("n={bad}")]);
    assert_eq!(out.status, 2);
    assert!(out.stderr.contains("--set n=many: not a whole number"), "{}", out.stderr);
    // The help says so, with an example.
    let help = env.run("lct-plan", &["create", "--help"]).ok();
    assert!(
        help.stdout.contains("--set-file <NAME=PATH>") && help.stdout.contains("standard input"),
        "{}",
        help.stdout
    );
    let help = env.run("lct-plan", &["--help"]).ok();
    assert!(help.stdout.contains("--set-file superuser_password=./pg-password"), "{}", help.stdout);
    // An offer cannot carry a secret: offered values reach dependents' command lines.
    let plan = write(
        &env,
        "q.yaml",
        "description: x\nparameters:\n  pw: {type: string, secret: true, description: a password}\ngroups:\n  node: {count: 1, image: lct/netns}\noffers:\n  url: \"postgres://app:{{ pw }}@db\"\n",
    );
    let out = env.run("lct-plan", &["validate", &plan, "--set-file", &format!("pw={file}")]);
    assert_eq!(out.status, 1);
    assert!(out.stderr.contains("offers.url: an offered value reaches the dependents' hooks"), "{}", out.stderr);
}

/// A create on the local cloud (namespace nodes) with a secret from a file: no process
/// (lct-plan, its hooks on the controller and on the nodes) ever shows the secret in `ps`,
/// and neither do the event log, the hooks' logs, `status` or the output; the hooks still
/// get it, on standard input.
#[test]
#[ignore = "needs root: network namespaces (scripts/test runs it as root)"]
fn a_secret_from_a_file_never_appears_in_ps_logs_or_errors_during_a_create() {
    let env = Env::new();
    let secret = format!("s3cr3t-{}-value", std::process::id());
    let got = env.state.path().join("got");
    std::fs::create_dir_all(&got).unwrap();
    let plan = write(
        &env,
        "p.yaml",
        "description: a secret's way\nparameters:\n  pw: {type: string, secret: true, description: a password}\n  out: {type: string, description: where hooks write}\ngroups:\n  node: {count: 2, image: lct/netns}\nhooks:\n  created:\n    - action: hosts\n    - {run: \"IFS= read -r line; printf '%s' \\\"$line\\\" > $LCT_PARAM_OUT/$LCT_NODE_NAME; sleep 1\", on: [node]}\n    - {run: \"IFS= read -r line; printf '%s' \\\"$line\\\" > $LCT_PARAM_OUT/controller; sleep 1\"}\n",
    );
    let file = write(&env, "pw", &format!("{secret}\n"));
    let out_set = format!("out={}", got.display());
    let set_file = format!("pw={file}");
    let mut create = env.command("lct-plan", &["create", "sec", &plan, "--set", &out_set, "--set-file", &set_file]);
    create.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let child = create.spawn().unwrap();
    let pid = child.id();
    // Every process's arguments, sampled until the create ends.
    let mut seen_hooks = 0;
    let mut samples = 0;
    let waiter = std::thread::spawn(move || child.wait_with_output().unwrap());
    while !waiter.is_finished() {
        let ps = std::process::Command::new("ps").args(["-eo", "args"]).output().unwrap();
        let ps = String::from_utf8_lossy(&ps.stdout).into_owned();
        samples += 1;
        assert!(!ps.contains(&secret), "the secret is on a command line:\n{ps}");
        seen_hooks += ps.lines().filter(|l| l.contains("lct-hook")).count();
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = Run::from(waiter.join().unwrap());
    assert_eq!(out.status, 0, "create (pid {pid}): {}", out.stderr);
    assert!(seen_hooks > 0, "no hook was seen running in {samples} samples of ps");
    // The hooks got it: on the first line of their standard input.
    for who in ["sec-1", "sec-2", "controller"] {
        let line = std::fs::read_to_string(got.join(who)).unwrap();
        assert!(line.contains(&secret) && line.contains("plan-secrets"), "{who}: {line}");
    }
    // Nowhere else: not in what create printed, the event log, the hooks' logs, status.
    assert!(!out.stdout.contains(&secret) && !out.stderr.contains(&secret));
    let dir = env.state.path().join("plans").join("sec");
    let mut texts: Vec<String> = std::fs::read_dir(dir.join("events"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    for log in std::fs::read_dir(dir.join("logs")).unwrap() {
        texts.push(std::fs::read_to_string(log.unwrap().path()).unwrap());
    }
    let status = env.run("lct-plan", &["status", "sec"]).ok();
    texts.push(status.stdout + &status.stderr);
    for t in &texts {
        assert!(!t.contains(&secret), "the secret in: {t}");
    }
    // The state keeps it, for later events, readable by root only.
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(dir.join("cluster.json")).unwrap().permissions());
    assert_eq!(mode & 0o077, 0, "cluster.json is {mode:o}");
    env.run("lct-plan", &["destroy", "sec"]).ok();
}

/// A dependency's offered value that is an Ansible template (`{{ lookup('pipe', ...) }}`)
/// reaches a dependent's playbook as text: it never runs on the controller.
#[test]
#[ignore = "needs root: network namespaces (scripts/test runs it as root)"]
fn an_offered_value_cannot_run_a_template_in_a_dependents_playbook() {
    let env = Env::new();
    let marker = env.state.path().join("pwned");
    let up = write(
        &env,
        "up.yaml",
        &format!(
            "description: a hostile dependency\ngroups:\n  node:\n    count: 1\n    image: lct/netns\n    services:\n      web: {{ports: [80/tcp]}}\nfirewall:\n  allow:\n    - {{from: dependents, to: node.web}}\noffers:\n  x: \"{{% raw %}}{{{{ lookup('pipe', 'touch {}') }}}}{{% endraw %}}\"\n",
            marker.display()
        ),
    );
    let down = write(
        &env,
        "down.yaml",
        "description: a dependent with a playbook\ngroups:\n  node: {count: 1, image: lct/netns}\ndepends_on:\n  up: {cluster: up, services: [node.web]}\nhooks:\n  created:\n    - {playbook: site.yml}\n",
    );
    write(
        &env,
        "site.yml",
        "- hosts: localhost\n  connection: local\n  gather_facts: false\n  tasks:\n    - copy: {dest: \"{{ lct_cluster_out }}\", content: \"{{ lct_offer_up_x }}\"}\n      vars: {lct_cluster_out: OUT}\n"
            .replace("OUT", &env.state.path().join("seen").display().to_string())
            .as_str(),
    );
    env.run("lct-plan", &["create", "up", &up]).ok();
    env.run("lct-plan", &["create", "down", &down]).ok();
    let seen = std::fs::read_to_string(env.state.path().join("seen")).unwrap();
    assert!(seen.contains("lookup('pipe'"), "the playbook saw: {seen}");
    assert!(!marker.exists(), "the offered template ran on the controller");
    env.run("lct-plan", &["destroy", "down"]).ok();
    env.run("lct-plan", &["destroy", "up"]).ok();
}

/// A create whose provider cannot be used (Linode without a token) is refused before it
/// writes anything, so `scale` cannot go on to make the cluster later.
#[test]
fn a_create_refused_for_its_provider_writes_nothing_that_scale_could_finish() {
    let env = Env::new();
    let plan = write(&env, "p.yaml", "description: x\ngroups:\n  node: {count: 1}\n");
    let mut create = env.command("lct-plan", &["create", "lz", &plan, "-p", "linode"]);
    create
        .env("HOME", env.state.path())
        .env("XDG_CONFIG_HOME", env.state.path())
        .env_remove("LINODE_TOKEN")
        .env_remove("LINODE_CLI_TOKEN")
        .stdin(std::process::Stdio::null());
    let out = Run::from(create.output().unwrap());
    assert_eq!(out.status, 1, "{}", out.stderr);
    assert!(out.stderr.to_lowercase().contains("token"), "{}", out.stderr);
    nothing_written(&env, "lz");
}

/// A plan offering `update_node` names the node `lct-dns update` runs on (with its offered
/// values as arguments): only a node of its own cluster is taken, never another's.
#[test]
#[ignore = "needs root: network namespaces (scripts/test runs it as root)"]
fn an_update_node_offer_cannot_send_lct_dns_to_another_clusters_node() {
    let env = Env::new();
    let victim =
        write(&env, "victim.yaml", "description: a bystander\ngroups:\n  node: {count: 1, image: lct/netns}\n");
    let evil = write(
        &env,
        "evil.yaml",
        "description: names another cluster's node as its DNS server\ngroups:\n  node: {count: 1, image: lct/netns}\noffers:\n  update_node: victim-1\n  server: 10.0.0.1\n  dns_ns: ns1.example=10.0.0.1\n  domain: example\nhooks:\n  created:\n    - action: dns\n",
    );
    env.run("lct-plan", &["create", "victim", &victim]).ok();
    // The dns action finds no node of cluster evil named victim-1: nothing runs anywhere.
    let out = env.run("lct-plan", &["create", "evil", &evil]);
    assert_eq!(out.status, 0, "{}", out.stderr);
    assert!(!out.stderr.contains("victim-1"), "{}", out.stderr);
    env.run("lct-plan", &["destroy", "evil"]).ok();
    env.run("lct-plan", &["destroy", "victim"]).ok();
}
