//! lct-plan on the command line: packaged plans, validation errors that name the place.

use lct_tests::Env;

#[test]
fn list_show_validate_and_errors_that_name_the_place() {
    let env = Env::new();
    let list = env.run("lct-plan", &["list"]).ok();
    assert!(
        list.stdout.contains("package:zookeeper") && list.stdout.contains("package:postgres-ha"),
        "{}",
        list.stdout
    );
    let show = env.run("lct-plan", &["show", "package:postgres-ha"]).ok();
    assert!(show.stdout.contains("Downloads: nothing outside Debian's archive."), "{}", show.stdout);
    assert!(show.stdout.contains("superuser_password   string   <secret>"), "{}", show.stdout);
    env.run("lct-plan", &["validate", "package:zookeeper", "--set", "servers=5"]).ok();
    let out = env.run("lct-plan", &["validate", "package:zookeeper", "--set", "servers=five"]);
    assert_eq!(out.status, 2);
    assert!(out.stderr.contains("--set servers=five: not a whole number"), "{}", out.stderr);

    let file = env.state.path().join("plan.yaml");
    std::fs::write(&file, "description: x\ngroups:\n  server:\n    count: 1\n    colour: blue\n").unwrap();
    let out = env.run("lct-plan", &["validate", file.to_str().unwrap()]);
    assert_eq!(out.status, 1);
    assert!(
        out.stderr.contains(&format!(
            "{}: line 5, column 5: field groups.server.colour: unknown field `colour`",
            file.display()
        )),
        "{}",
        out.stderr
    );
    // A hook's script must be in the plan's directory.
    std::fs::write(
        &file,
        "description: x\ngroups:\n  server: {count: 1}\nhooks:\n  created:\n    - {script: install.sh, on: [server]}\n",
    )
    .unwrap();
    let out = env.run("lct-plan", &["validate", file.to_str().unwrap()]);
    assert!(
        out.stderr.contains("hooks.created[0]: ") && out.stderr.contains("install.sh: no such file"),
        "{}",
        out.stderr
    );
    std::fs::write(env.state.path().join("install.sh"), "#!/bin/sh\n").unwrap();
    env.run("lct-plan", &["validate", file.to_str().unwrap()]).ok();
    let out = env.run("lct-plan", &["validate", "package:nothing"]);
    assert!(out.stderr.contains("no packaged plan \"nothing\"; there are: zookeeper, postgres-ha"), "{}", out.stderr);
}
