//! The built-in actions of hooks: `install` (lct's programs), `hosts`, `firewall`,
//! `packages` (Debian's, from the plan) and `dns` (every DNS server made by a plan here
//! brought in line with the inventory); run in events, and again by `reconcile` to repair
//! drift.

use crate::state::Home;
use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context as _, bail};
use lct_core::record::{Access, Cluster, Name, Node};
use lct_inventory::exec::ExecOptions;

use crate::plan::Action;
use crate::script::last_line;
use crate::spec::offers;
use crate::state::{Context, clusters, load_cluster};

/// `reconcile` for a cluster whose plan names no `mesh-sync` but which has a mesh member:
/// the mesh kept as it is (a lost leader replaced, its firewalls pushed, every member's
/// drift undone) over the clusters that already have a member, never grown to this cluster's
/// dependencies and dependents (which `mesh-sync`, asked for by a plan, brings in).
pub async fn resync_mesh(ctx: &Context) -> anyhow::Result<()> {
    let records = ctx.store.load()?;
    mesh_sync(ctx, &records, false, MeshCheck::EveryMember)
        .await
        .with_context(|| format!("cluster {}: the mesh kept", ctx.name()))
}

/// Runs one built-in action outside an event (`reconcile` repairing drift). Its `mesh-sync`
/// asks every member, not only those whose planned configuration changed: drift on a node
/// (an interface or route removed by hand, wireguard-go killed) changes no plan, and
/// reconcile is where it is undone.
pub async fn repair(ctx: &Context, action: Action) -> anyhow::Result<()> {
    let records = ctx.store.load()?;
    let repaired = match action {
        Action::MeshSync => mesh_sync(ctx, &records, true, MeshCheck::EveryMember).await,
        _ => run_action(ctx, action, &records, None).await,
    };
    repaired.with_context(|| format!("cluster {}: action {}", ctx.name(), action_name(action)))
}

/// Which members a mesh sync contacts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MeshCheck {
    /// Those whose planned configuration differs from the one they last applied (an event's
    /// sync: a node joining changes its region and the leaders only).
    Changed,
    /// Every member, its interface, peers and routes compared and put right (`lct-mesh sync
    /// --full`): reconcile's drift repair.
    EveryMember,
}

pub(crate) fn action_name(action: Action) -> String {
    serde_json::to_value(action).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
}

/// A built-in action; `install` and `packages` only on `only`, when given.
pub(crate) async fn run_action(
    ctx: &Context,
    action: Action,
    records: &[Cluster],
    only: Option<&[Name]>,
) -> anyhow::Result<()> {
    let (name, plan, tools) = (ctx.name(), &ctx.plan, &ctx.tools);
    let selector = lct_inventory::Selector { clusters: vec![name.clone()], ..Default::default() };
    let own = || async {
        let nodes = lct_inventory::query(&selector, records).await?;
        anyhow::Ok(nodes.into_iter().filter(|n| only.is_none_or(|o| o.contains(&n.name))).collect::<Vec<Node>>())
    };
    let options = ExecOptions::new()?;
    match action {
        Action::Install => {
            let nodes = own().await?;
            let programs = lct_inventory::install::Program::beside(&tools.bin_dir)?;
            for r in lct_inventory::install::install(&nodes, &programs, &options).await {
                if !r.outcome.success() {
                    bail!("node {}: {}: {}", r.node, r.outcome.describe(), r.stderr.trim());
                }
            }
        }
        Action::Hosts => {
            let nodes = lct_inventory::query(&lct_inventory::Selector::default(), records).await?;
            // This cluster's block and its dependencies' blocks reach its nodes and its
            // dependents' nodes.
            let mut selected: BTreeSet<Name> = [name.clone()].into();
            selected.extend(lct_core::state::dependencies_of(records, &selected));
            let mesh = lct_mesh::addresses(ctx.home.store.as_ref())?;
            let push_plan = lct_hosts::plan(&nodes, records, &selected, &lct_hosts::RenderOptions::default(), &mesh)?;
            let local = tools.bin_dir.join("lct-hosts");
            for r in lct_hosts::push(push_plan, "/etc/hosts", &local, "lct-hosts", &options).await {
                if let Some(e) = r.error {
                    bail!("node {}: {e}", r.node);
                }
            }
        }
        Action::Firewall => {
            let nodes = lct_inventory::query(&lct_inventory::Selector::default(), records).await?;
            push_firewalls(ctx, &nodes, records, &[name.clone()].into()).await?;
        }
        Action::Packages => {
            let nodes = own().await?;
            // The packages are arguments of the script ("$@", after apt-get's `--`), never
            // part of its text: a name can be neither a shell word nor an option (and each
            // passed Debian's grammar at validate).
            let mut argv: Vec<String> = ["sh", "-c", INSTALL_PACKAGES, "lct-packages"].map(String::from).to_vec();
            argv.extend(plan.packages.iter().cloned());
            let jobs = nodes
                .iter()
                .filter(|n| matches!(n.access, Some(Access::Ssh { .. })))
                .map(|n| (n.clone(), argv.clone(), Vec::new()))
                .collect();
            for r in lct_inventory::exec::exec_each(jobs, &options, None).await {
                if !r.outcome.success() {
                    bail!("node {}: {}: {}", r.node, r.outcome.describe(), r.stderr.trim());
                }
            }
        }
        Action::Dns => update_dns(&ctx.home, records).await?,
        Action::MeshSync => mesh_sync(ctx, records, true, MeshCheck::Changed).await?,
    }
    Ok(())
}

/// lct-fw pushed for the clusters in `changed`, their dependencies and dependents (what the
/// `firewall` action does); a node that failed fails it, named.
async fn push_firewalls(
    ctx: &Context,
    nodes: &[Node],
    records: &[Cluster],
    changed: &BTreeSet<Name>,
) -> anyhow::Result<()> {
    let fw = lct_fw::push::PushOptions {
        force: false,
        full: false,
        kill_established: true,
        backend: lct_fw::sync::Backend::Nft,
        parallel: 32,
        timeout: std::time::Duration::from_secs(60),
        local_bin: ctx.tools.bin_dir.join("lct-fw").display().to_string(),
        remote_bin: "lct-fw".into(),
    };
    let reports = lct_fw::push::push(nodes, records, changed, &fw).await?;
    let failed = lct_fw::push::failures(&reports);
    if !failed.is_empty() {
        bail!("{}", failed.join(", "));
    }
    Ok(())
}

/// `mesh-sync`: the mesh over every node of this cluster, its dependencies and dependents,
/// and of every cluster that already has a member (a sync is of the whole mesh: a node left
/// out would leave it). Nodes gone from the inventory leave the mesh; a failed node fails the
/// hook, named. When the sync made firewalls stale (a new leader, a member's address) and a
/// cluster concerned has a firewall, lct-fw is pushed to those clusters (and their
/// dependencies and dependents): a new leader's default-deny table, and its peers', would
/// drop its WireGuard otherwise. `check` says which members are contacted.
async fn mesh_sync(ctx: &Context, records: &[Cluster], grow: bool, check: MeshCheck) -> anyhow::Result<()> {
    let nodes = lct_inventory::query(&lct_inventory::Selector::default(), records).await?;
    let members = lct_mesh::addresses(ctx.home.store.as_ref())?;
    let clusters = mesh_reach(ctx.name(), records, &nodes, &members, grow);
    let meshed: Vec<Node> = nodes.iter().filter(|n| clusters.contains(&n.cluster)).cloned().collect();
    let options = lct_mesh::remote::Options {
        store: ctx.home.store.clone(),
        prefix: None,
        topology: None,
        port: None,
        parallel: 32,
        timeout: std::time::Duration::from_secs(120),
        full: check == MeshCheck::EveryMember,
        local_bin: ctx.tools.bin_dir.join("lct-mesh"),
        remote_bin: "lct-mesh".into(),
    };
    let reports = lct_mesh::remote::sync(&meshed, &options).await?;
    let failed: Vec<String> = reports
        .iter()
        .filter(|r| r.status == lct_mesh::model::SyncStatus::Failed)
        .map(|r| format!("{} ({})", r.node, r.error.as_deref().unwrap_or("failed")))
        .collect();
    if !failed.is_empty() {
        bail!("mesh sync failed on {}", failed.join(", "));
    }
    let changed = lct_mesh::follow::firewalls_to_push(&reports, &nodes, records);
    if !changed.is_empty() {
        push_firewalls(ctx, &nodes, records, &changed).await.context("lct-fw after the mesh changed")?;
    }
    Ok(())
}

/// The clusters a mesh sync for `name` covers: every cluster that already has a member
/// (a sync is of the whole mesh), and, when `grow` (a plan's `mesh-sync`), `name` with its
/// dependencies and dependents.
fn mesh_reach<T>(
    name: &Name,
    records: &[Cluster],
    nodes: &[Node],
    members: &BTreeMap<Name, T>,
    grow: bool,
) -> BTreeSet<Name> {
    let mut clusters: BTreeSet<Name> =
        nodes.iter().filter(|n| members.contains_key(&n.name)).map(|n| n.cluster.clone()).collect();
    if grow {
        let own: BTreeSet<Name> = [name.clone()].into();
        clusters.extend(lct_core::state::dependencies_of(records, &own));
        clusters.extend(lct_core::state::dependents_of(records, &own));
        clusters.extend(own);
    }
    clusters
}

/// Installs the packages given as its arguments. A node that has them all (at the version
/// asked, `NAME=VERSION`) is left alone and reads no mirror: a node made from a baked image.
/// Servers get what they need, not what is recommended (no desktop fonts for a JRE). Tried
/// three times: a mirror changing while a node reads it (the lab's, when another plan adds
/// packages; Debian's, on a push) fails one run of apt, not the next one, which reads the
/// index again.
pub(crate) const INSTALL_PACKAGES: &str = r#"export DEBIAN_FRONTEND=noninteractive
have=yes
for p in "$@"; do
  got=$(dpkg-query -W -f '${db:Status-Abbrev}${Version}' -- "${p%%=*}" 2>/dev/null) || { have=no; break; }
  case "$p" in
    *=*) [ "$got" = "ii ${p#*=}" ] || { have=no; break; } ;;
    *) case "$got" in "ii "*) ;; *) have=no; break ;; esac ;;
  esac
done
[ $have = yes ] && exit 0
for try in 1 2 3; do
  apt-get update -qq && apt-get install -y -qq --no-install-recommends -- "$@" >/dev/null && exit 0
  [ $try = 3 ] || sleep $try
done
exit 100"#;

/// Brings every DNS server made by a plan here (package:dns-private) in line with the
/// whole inventory: `lct-dns update` runs on the server's node, where its key is (the key
/// never leaves it), and sends the difference as signed updates.
pub async fn update_dns(home: &Home, records: &[Cluster]) -> anyhow::Result<()> {
    let options = ExecOptions::new()?;
    let all = lct_inventory::query(&lct_inventory::Selector::default(), records).await?;
    let input: String = all.iter().map(|n| lct_core::stream::to_line(n) + "\n").collect();
    // A mesh across regions: the server answers each region from that region's view.
    let mesh = lct_mesh::addresses(home.store.as_ref())?;
    for (server, offered) in dns_servers(home, &all, records)? {
        let (Some(at), Some(address), Some(ns), Some(domain)) =
            (offered.get("update_node"), offered.get("server"), offered.get("dns_ns"), offered.get("domain"))
        else {
            bail!("cluster {server} offers update_node but not server, dns_ns and domain");
        };
        // Only a node of the offering cluster: a plan cannot send lct-dns to another's node.
        let Some(node) = all.iter().find(|n| n.name.as_str() == at && n.cluster == server) else {
            // Its node is gone: reconcile and create put it back; nothing to update.
            continue;
        };
        // The update runs on the server's node, where the key is: it never leaves it. The
        // offered values are plan output: each is glued to its option (`--domain=VALUE`), so
        // none can be read as an option of its own.
        let argv: Vec<String> = vec![
            "lct-dns".into(),
            "update".into(),
            format!("--server={address}:53"),
            "--key-file=/etc/lct/lct-update.key".into(),
            format!("--domain={domain}"),
            format!("--parent-domain={domain}"),
            format!("--ns={ns}"),
            "--output=jsonl".into(),
        ];
        let mut steps = vec![("lct-dns update", argv)];
        if !mesh.is_empty() {
            // Its own view as its region sees it (other regions' members by their mesh
            // addresses), then every other region's view, re-rendered and reloaded.
            let region = region_args(node, &mesh);
            steps[0].1.extend(region.iter().cloned());
            let mut regions: Vec<String> = vec!["python3".into(), DNS_REGIONS.into(), "regions".into()];
            regions.extend(region);
            steps.push(("region views", regions));
        }
        for (what, argv) in steps {
            let jobs = vec![(node.clone(), argv, input.clone().into_bytes())];
            for r in lct_inventory::exec::exec_each(jobs, &options, None).await {
                if !r.outcome.success() {
                    bail!(
                        "{what} on {} (cluster {server}): {}: {}",
                        r.node,
                        r.outcome.describe(),
                        last_line(&r.stderr)
                    );
                }
            }
        }
    }
    Ok(())
}

/// Where package:dns-private's configure.py keeps itself on the primary, for the `dns`
/// action's region views (`configure.py regions`).
const DNS_REGIONS: &str = "/usr/local/lib/lct/dns-private.py";

/// `--region=PROVIDER:REGION` (the server node's private network) and one
/// `--mesh-address=NODE=IPV4` per mesh member: what `lct-dns update` and the region views
/// render with on a node that has no state store. Names and addresses passed lct's grammar
/// when recorded, and each is glued to its option.
fn region_args(server: &Node, mesh: &BTreeMap<Name, std::net::Ipv4Addr>) -> Vec<String> {
    let mut args = vec![format!("--region={}:{}", server.provider, server.region)];
    args.extend(mesh.iter().map(|(node, address)| format!("--mesh-address={node}={address}")));
    args
}

/// The DNS servers made by plans here (clusters whose plan offers `update_node`, as
/// package:dns-private does), with what they offer.
fn dns_servers(
    home: &Home,
    nodes: &[Node],
    records: &[Cluster],
) -> anyhow::Result<Vec<(Name, BTreeMap<String, String>)>> {
    let mut servers = Vec::new();
    for name in clusters(home)? {
        let (state, plan) = load_cluster(home, &name)?;
        if plan.offers.contains_key("update_node") && nodes.iter().any(|n| n.cluster == name) {
            let offered = offers(&plan, &name, &state.parameters, nodes, records)?;
            servers.push((name, offered));
        }
    }
    Ok(servers)
}

#[cfg(test)]
mod tests {
    use super::INSTALL_PACKAGES;

    /// reconcile keeps the mesh it finds (the clusters with a member) and never grows it to a
    /// dependent nobody meshed; a plan's own mesh-sync takes its dependencies and dependents.
    #[test]
    fn reconcile_keeps_the_mesh_and_grows_it_only_when_a_plan_asks() {
        use lct_core::record::{Cluster, Name, Node};
        let node = |cluster: &str, name: &str| -> Node {
            serde_json::from_value(serde_json::json!({
                "cluster": cluster, "group": "server", "name": name, "provider": "local", "region": "a",
                "status": "running", "private_ipv4": [], "public_ipv4": [], "private_ipv6": [], "public_ipv6": [],
                "tags": []
            }))
            .unwrap()
        };
        let nodes = [node("zk", "zk-1"), node("zk", "zk-2"), node("cl", "cl-1"), node("db", "db-1")];
        let records: Vec<Cluster> = [
            serde_json::json!({"name": "zk"}),
            serde_json::json!({"name": "cl", "depends_on": [{"cluster": "zk"}]}),
            serde_json::json!({"name": "db"}),
        ]
        .into_iter()
        .map(|v| serde_json::from_value(v).unwrap())
        .collect();
        let members: std::collections::BTreeMap<Name, ()> = [("zk-1".parse().unwrap(), ())].into();
        let zk: Name = "zk".parse().unwrap();
        let names = |set: std::collections::BTreeSet<Name>| set.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(names(super::mesh_reach(&zk, &records, &nodes, &members, false)), ["zk"]);
        assert_eq!(names(super::mesh_reach(&zk, &records, &nodes, &members, true)), ["cl", "zk"]);
        let db: Name = "db".parse().unwrap();
        assert_eq!(names(super::mesh_reach(&db, &records, &nodes, &members, false)), ["zk"], "db never joins");
    }

    #[test]
    fn region_arguments_name_the_servers_network_and_every_member() {
        let server: lct_core::record::Node = serde_json::from_value(serde_json::json!({
            "cluster": "dns", "group": "ns", "name": "dns-1", "provider": "local", "region": "b",
            "status": "running", "private_ipv4": [], "public_ipv4": [], "private_ipv6": [], "public_ipv6": [],
            "tags": []
        }))
        .unwrap();
        let mesh = [("a-1", [100, 64, 0, 1]), ("dns-1", [100, 64, 0, 7])]
            .map(|(n, a)| (n.parse().unwrap(), std::net::Ipv4Addr::from(a)))
            .into();
        assert_eq!(
            super::region_args(&server, &mesh),
            ["--region=local:b", "--mesh-address=a-1=100.64.0.1", "--mesh-address=dns-1=100.64.0.7"]
        );
    }

    /// Runs the script with a dpkg-query that knows `installed` (`NAME VERSION` lines) and an
    /// apt-get that says it ran: whether apt-get ran.
    fn apt_ran(installed: &str, args: &[&str]) -> bool {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path();
        let fake = |name: &str, body: &str| {
            let path = bin.join(name);
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        };
        std::fs::write(bin.join("installed"), installed).unwrap();
        // dpkg-query -W -f FORMAT -- NAME: "ii VERSION" for an installed package, else exit 1.
        fake(
            "dpkg-query",
            &format!(
                "v=$(awk -v p=\"$5\" '$1 == p {{ print $2 }}' {}/installed); [ -n \"$v\" ] || exit 1; printf 'ii %s' \"$v\"",
                bin.display()
            ),
        );
        fake("apt-get", &format!("touch {}/ran", bin.display()));
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
        let status = std::process::Command::new("sh")
            .args(["-c", INSTALL_PACKAGES, "lct-packages"])
            .args(args)
            .env("PATH", path)
            .status()
            .unwrap();
        assert!(status.success());
        bin.join("ran").exists()
    }

    #[test]
    fn a_node_with_every_package_reads_no_mirror() {
        let installed = "zookeeperd 3.8.0-11\njq 1.6-2\n";
        assert!(!apt_ran(installed, &["zookeeperd", "jq"]), "all there: apt must not run");
        assert!(!apt_ran(installed, &["jq=1.6-2"]), "the version asked is there");
        assert!(apt_ran(installed, &["jq=1.7-1"]), "another version asked");
        assert!(apt_ran(installed, &["zookeeperd", "curl"]), "one missing");
        assert!(apt_ran("", &["curl"]), "nothing installed");
    }
}
