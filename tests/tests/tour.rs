//! The README's commands against the programs: every lct command in its shell blocks (the
//! tour, the Linode lines) names subcommands and flags the program has, as its `--help`
//! says; and the lines that change nothing are run. Docs cannot drift from the code unseen.
//! No root needed.

use std::collections::BTreeMap;

use lct_tests::Env;

const BINARIES: [&str; 8] =
    ["lct-api", "lct-inventory", "lct-hosts", "lct-dns", "lct-fw", "lct-image", "lct-plan", "lct-mesh"];

/// What one `--help` says: subcommands, and each flag with whether it takes a value.
#[derive(Debug, Default)]
struct Help {
    commands: Vec<String>,
    flags: BTreeMap<String, bool>,
}

fn parse_help(text: &str) -> Help {
    let mut help = Help::default();
    let mut section = "";
    for line in text.lines() {
        if !line.starts_with(' ') && line.ends_with(':') {
            section = line;
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let words: Vec<&str> = line.split_whitespace().collect();
        match section {
            "Commands:" if indent == 2 => help.commands.push(words[0].to_string()),
            "Options:" if indent <= 6 && line.trim_start().starts_with('-') => {
                // `-c, --cluster <CLUSTER>`, `--all`, `-v, --verbose...`
                let takes_value = words.iter().any(|w| w.starts_with('<') || w.starts_with("[<"));
                for w in words.iter().take_while(|w| w.starts_with('-')) {
                    let flag = w.trim_end_matches(',').trim_end_matches("...");
                    let flag = flag.split(['=', '[']).next().unwrap();
                    help.flags.insert(flag.to_string(), takes_value);
                }
            }
            _ => {}
        }
    }
    help
}

/// The shell blocks of a Markdown text, continuation lines joined, comments dropped.
fn shell_lines(markdown: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut in_block = false;
    let mut pending = String::new();
    for line in markdown.lines() {
        if line.starts_with("```") {
            in_block = line == "```sh";
            continue;
        }
        if !in_block {
            continue;
        }
        let code = strip_comment(line);
        if let Some(head) = code.trim_end().strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(&code);
        if !pending.trim().is_empty() {
            lines.push(std::mem::take(&mut pending));
        }
        pending.clear();
    }
    lines
}

/// A line without its `# comment` (a `#` after a space, outside quotes).
fn strip_comment(line: &str) -> String {
    let (mut single, mut double) = (false, false);
    let mut prev = ' ';
    for (i, c) in line.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if !single && !double && prev.is_whitespace() => return line[..i].to_string(),
            _ => {}
        }
        prev = c;
    }
    line.to_string()
}

/// Shell words, with `|`, `;`, `&&`, `||`, `&` as separate words and quotes removed.
fn words(line: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut word = String::new();
    let (mut single, mut double, mut quoted) = (false, false, false);
    let mut chars = line.chars().peekable();
    let flush = |word: &mut String, quoted: &mut bool, out: &mut Vec<(String, bool)>| {
        if !word.is_empty() || *quoted {
            out.push((std::mem::take(word), false));
        }
        *quoted = false;
    };
    while let Some(c) = chars.next() {
        match c {
            '\'' if !double => (single, quoted) = (!single, true),
            '"' if !single => (double, quoted) = (!double, true),
            c if single || double => word.push(c),
            c if c.is_whitespace() => flush(&mut word, &mut quoted, &mut out),
            '|' | ';' | '&' => {
                flush(&mut word, &mut quoted, &mut out);
                if chars.peek() == Some(&c) {
                    chars.next();
                }
                out.push((c.to_string(), true));
            }
            c => word.push(c),
        }
    }
    flush(&mut word, &mut quoted, &mut out);
    out
}

/// Each lct program's invocation in a line: its arguments up to the next separator, without
/// redirections.
fn invocations(line: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    for command in words(line).split(|(_, separator)| *separator) {
        let mut args: Vec<String> = Vec::new();
        let mut skip = false;
        for (w, _) in command {
            if skip {
                skip = false;
            } else if w == ">" || w == "<" || w == "2>" {
                skip = true;
            } else if !w.starts_with('>') && !w.starts_with('<') {
                args.push(w.clone());
            }
        }
        // `ip netns exec NS lct-dns ...`, `VAR=x lct-...`: the program wherever it starts.
        if let Some(start) = args.iter().position(|a| BINARIES.contains(&a.as_str())) {
            found.push(args[start..].to_vec());
        }
    }
    found
}

/// What is wrong with one invocation, per its programs' `--help`.
fn check(env: &Env, helps: &mut BTreeMap<Vec<String>, Help>, args: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut path = vec![args[0].clone()];
    let mut positional_seen = false;
    let mut i = 1;
    while i < args.len() {
        let help = helps.entry(path.clone()).or_insert_with(|| {
            let mut help_args: Vec<&str> = path[1..].iter().map(String::as_str).collect();
            help_args.push("--help");
            parse_help(&env.run(&path[0], &help_args).ok().stdout)
        });
        let arg = &args[i];
        if arg == "--" {
            break;
        }
        if arg.starts_with('-') && arg.len() > 1 {
            let flag = arg.split('=').next().unwrap();
            match help.flags.get(flag) {
                None => problems.push(format!("{}: no flag {flag} (in `{}`)", path.join(" "), args.join(" "))),
                Some(true) if !arg.contains('=') => i += 1,
                Some(_) => {}
            }
        } else if !positional_seen && help.commands.iter().any(|c| c == arg) {
            path.push(arg.clone());
        } else if !positional_seen && !help.commands.is_empty() {
            problems.push(format!("{}: no subcommand {arg:?} (in `{}`)", path.join(" "), args.join(" ")));
            break;
        } else {
            positional_seen = true;
        }
        i += 1;
    }
    problems
}

#[test]
fn every_readme_command_names_subcommands_and_flags_that_exist() {
    let env = Env::new();
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    assert!(readme.contains("## A short tour"), "the README's tour is gone");
    let mut helps = BTreeMap::new();
    let mut problems = Vec::new();
    let mut checked = 0;
    let mut used: BTreeMap<String, usize> = BTreeMap::new();
    for line in shell_lines(&readme) {
        for args in invocations(&line) {
            *used.entry(args[0].clone()).or_default() += 1;
            problems.extend(check(&env, &mut helps, &args));
            checked += 1;
        }
    }
    assert!(problems.is_empty(), "the README's commands do not match the programs:\n{}", problems.join("\n"));
    // The parse found the tour: every program appears, and many commands were checked.
    for bin in BINARIES {
        assert!(used.contains_key(bin), "the README shows no {bin} command: {used:?}");
    }
    assert!(checked >= 50, "only {checked} commands found in the README");
}

/// The same for the shell blocks of docs/*.md.
#[test]
fn every_documented_command_names_subcommands_and_flags_that_exist() {
    let env = Env::new();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs");
    let mut helps = BTreeMap::new();
    let mut problems = Vec::new();
    let mut checked = 0;
    let mut docs: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().map(|e| e.path()).collect();
    docs.sort();
    for doc in docs.iter().filter(|p| p.extension().is_some_and(|e| e == "md")) {
        for line in shell_lines(&std::fs::read_to_string(doc).unwrap()) {
            for args in invocations(&line) {
                for p in check(&env, &mut helps, &args) {
                    problems.push(format!("{}: {p}", doc.file_name().unwrap().to_string_lossy()));
                }
                checked += 1;
            }
        }
    }
    assert!(problems.is_empty(), "the docs' commands do not match the programs:\n{}", problems.join("\n"));
    assert!(checked >= 50, "only {checked} commands found in docs/");
}

#[test]
fn a_mistyped_command_is_caught() {
    let env = Env::new();
    let mut helps = BTreeMap::new();
    for (line, wrong) in [
        ("lct-inventory query --clustr demo", "no flag --clustr"),
        ("lct-plan creat zk package:zookeeper", "no subcommand \"creat\""),
        ("lct-inventory clusters set zk --domian x", "no flag --domian"),
        ("ip netns exec lct-zk-1 lct-dns serve --listn 1.2.3.4:53 &", "no flag --listn"),
        ("lct-inventory query | lct-fw render --nod zk-1", "no flag --nod"),
    ] {
        let problems: Vec<String> = invocations(line).iter().flat_map(|args| check(&env, &mut helps, args)).collect();
        assert!(problems.iter().any(|p| p.contains(wrong)), "{line}: {problems:?}");
    }
    let fine: Vec<String> = invocations("lct-api -p linode create --cluster zk --count 3 --region us-east")
        .iter()
        .flat_map(|args| check(&env, &mut helps, args))
        .collect();
    assert!(fine.is_empty(), "{fine:?}");
}

/// The tour's lines that only read run as written, and say what the README says they do.
#[test]
fn the_tours_read_only_lines_run() {
    let env = Env::new();
    let list = env.run("lct-plan", &["list"]).ok();
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let said = readme.lines().find(|l| l.starts_with("lct-plan list")).expect("the tour lists plans");
    let named = said.split('#').nth(1).expect("a comment naming the plans");
    let shown: Vec<&str> =
        list.stdout.lines().filter_map(|l| l.split_whitespace().next()?.strip_prefix("package:")).collect();
    let mut in_readme: Vec<&str> = named.split(',').map(str::trim).collect();
    let mut shown_sorted = shown.clone();
    in_readme.sort();
    shown_sorted.sort();
    assert_eq!(in_readme, shown_sorted, "the tour's comment names the packaged plans");
    let graph =
        env.run("lct-plan", &["graph", "--plan", "zk=package:zookeeper", "--plan", "pg=package:postgres-ha"]).ok();
    assert!(graph.stdout.starts_with("digraph"), "{}", graph.stdout);
}

/// The tour's local-cloud part, run as written in a lab of its own: namespace nodes, the
/// inventory, exec by cluster and by name, the private and public networks, cluster records,
/// hosts files and firewalls (up to its DNS lines, which start a server in the background).
#[test]
#[ignore = "needs root: network namespaces (scripts/test runs it as root)"]
fn the_tours_local_cloud_part_runs_in_a_lab() {
    let env = Env::new();
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let lines = shell_lines(&readme);
    let start = lines.iter().position(|l| l.starts_with("lct-api create --cluster demo")).expect("the tour's start");
    let end = lines.iter().position(|l| l.starts_with("lct-inventory query | lct-dns zone")).expect("its DNS part");
    assert!(end - start >= 15, "the tour's local-cloud part: {:?}", &lines[start..end]);
    let bin_dir = lct_tests::bin("lct-api").parent().unwrap().to_path_buf();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let mut outputs = Vec::new();
    for line in &lines[start..end] {
        // The README's lab is `lct`; this one's namespaces have the test's lab name.
        let script = line.replace("ip netns exec lct-", &format!("ip netns exec {}-", env.lab));
        let mut command = env.command("lct-api", &[]);
        command.env("PATH", &path);
        let mut bash = std::process::Command::new("bash");
        bash.args(["-o", "pipefail", "-c", &script]);
        for (k, v) in command.get_envs() {
            match v {
                Some(v) => bash.env(k, v),
                None => bash.env_remove(k),
            };
        }
        let run = lct_tests::Run::from(bash.env("PATH", &path).stdin(std::process::Stdio::null()).output().unwrap());
        assert_eq!(run.status, 0, "`{script}` failed:\n{}\n{}", run.stdout, run.stderr);
        outputs.push((line.clone(), run.stdout));
    }
    let said = |prefix: &str| &outputs.iter().find(|(l, _)| l.starts_with(prefix)).expect(prefix).1;
    // What the tour's comments say the lines show.
    assert_eq!(said("lct-inventory query --cluster demo | cat").lines().count(), 3);
    let by_name = said("lct-inventory exec 'demo-[12]'");
    assert!(by_name.contains("\"node\":\"demo-1\"") && by_name.contains("\"node\":\"demo-2\""), "{by_name}");
    assert!(!by_name.contains("demo-3"), "{by_name}");
    let widened = said("lct-inventory query --cluster zk --with-dependents");
    assert_eq!(widened.lines().count(), 5, "zk's nodes and hdfs's: {widened}");
    assert!(said("ip netns exec lct-demo-1 getent hosts").contains("192.168.128.2"));
    env.run("lct-api", &["lab", "down"]).ok();
}
