//! An Ansible dynamic inventory from node records: what `ansible-playbook -i` reads from an
//! inventory script's `--list`. Groups per cluster (`zk`) and per cluster and group
//! (`zk_server`; Ansible group names take no hyphens), host variables from the node record
//! (`ansible_host`, user, port) and lct's SSH trust: its key, its known_hosts, strict host
//! key checking. A local machine node is reached through the lab's outside namespace.

use std::collections::BTreeMap;

use lct_core::record::{Access, Node};
use lct_core::ssh::SshFiles;
use serde_json::{Map, Value, json};

/// An Ansible group name for an lct name (`web-app` -> `web_app`).
pub fn group_name(parts: &[&str]) -> String {
    parts.iter().map(|p| p.replace('-', "_")).collect::<Vec<_>>().join("_")
}

/// The `--list` document for `nodes`; refused when Ansible would connect to a node out of
/// this machine that lives in a lab (see `exec::check_reach`).
pub fn inventory(nodes: &[Node], ssh: &SshFiles) -> Result<Value, String> {
    for node in nodes {
        crate::exec::check_reach(node)?;
    }
    let mut groups: BTreeMap<String, (Vec<String>, Vec<String>)> = BTreeMap::new();
    let mut hostvars = Map::new();
    for node in nodes {
        let cluster = group_name(&[node.cluster.as_str()]);
        let role = group_name(&[node.cluster.as_str(), node.group.as_str()]);
        let c = groups.entry(cluster.clone()).or_default();
        if !c.1.contains(&role) {
            c.1.push(role.clone());
        }
        groups.entry(role).or_default().0.push(node.name.to_string());
        hostvars.insert(node.name.to_string(), host_vars(node, ssh));
    }
    let mut doc = Map::new();
    let clusters: Vec<String> = nodes
        .iter()
        .map(|n| group_name(&[n.cluster.as_str()]))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    doc.insert("all".into(), json!({ "children": clusters }));
    for (name, (hosts, children)) in groups {
        let mut g = Map::new();
        if !hosts.is_empty() {
            g.insert("hosts".into(), json!(hosts));
        }
        if !children.is_empty() {
            g.insert("children".into(), json!(children));
        }
        doc.insert(name, Value::Object(g));
    }
    doc.insert("_meta".into(), json!({ "hostvars": hostvars }));
    Ok(Value::Object(doc))
}

fn host_vars(node: &Node, ssh: &SshFiles) -> Value {
    let mut vars = Map::new();
    let record = serde_json::to_value(node).unwrap_or(Value::Null);
    vars.insert("lct_node".into(), record);
    vars.insert("lct_cluster".into(), json!(node.cluster));
    vars.insert("lct_group".into(), json!(node.group));
    vars.insert("lct_private_ipv4".into(), json!(node.private_ipv4));
    vars.insert("lct_public_ipv4".into(), json!(node.public_ipv4));
    match &node.access {
        Some(Access::Ssh { host, port, user, netns }) => {
            vars.insert("ansible_host".into(), json!(host));
            vars.insert("ansible_port".into(), json!(port));
            vars.insert("ansible_user".into(), json!(user));
            vars.insert("ansible_ssh_private_key_file".into(), json!(ssh.identity()));
            let mut args: Vec<String> = ssh
                .client_options()
                .into_iter()
                .filter(|o| !o.starts_with("IdentityFile=") && !o.starts_with("BatchMode="))
                .map(|o| format!("-o {o}"))
                .collect();
            if let Some(ns) = netns {
                // Through the namespace that reaches the node (the lab's outside).
                args.push(format!("-o 'ProxyCommand=ip netns exec {ns} nc %h %p'"));
            }
            vars.insert("ansible_ssh_common_args".into(), json!(args.join(" ")));
            // Ansible's shared connections, kept briefly: nodes come and go.
            vars.insert("ansible_ssh_args".into(), json!("-o ControlMaster=auto -o ControlPersist=30s"));
        }
        Some(Access::Netns { netns }) => {
            // A namespace node shares this machine's file system: run locally, in its
            // namespace, with Ansible's local connection.
            vars.insert("ansible_connection".into(), json!("local"));
            vars.insert("lct_netns".into(), json!(netns));
        }
        None => {}
    }
    Value::Object(vars)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_per_cluster_and_role_and_pinned_ssh() {
        let nodes: Vec<Node> = [
            r#"{"cluster":"zk","group":"server","name":"zk-1","provider":"local","status":"running","public_ipv4":["100.64.0.1"],"access":{"method":"ssh","host":"100.64.0.1","netns":"lct-outside"}}"#,
            r#"{"cluster":"web-app","group":"node","name":"web-app-1","provider":"linode","status":"running","access":{"method":"ssh","host":"100.64.0.7","port":2222,"user":"admin"}}"#,
        ]
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
        let dir = tempfile::tempdir().unwrap();
        let doc = inventory(&nodes, &SshFiles::new(dir.path())).unwrap();
        assert_eq!(doc["all"]["children"], json!(["web_app", "zk"]));
        assert_eq!(doc["zk"]["children"], json!(["zk_server"]));
        assert_eq!(doc["zk_server"]["hosts"], json!(["zk-1"]));
        let zk = &doc["_meta"]["hostvars"]["zk-1"];
        assert_eq!(zk["ansible_host"], "100.64.0.1");
        let args = zk["ansible_ssh_common_args"].as_str().unwrap();
        assert!(args.contains("-o StrictHostKeyChecking=yes"), "{args}");
        assert!(args.contains("ProxyCommand=ip netns exec lct-outside nc %h %p"), "{args}");
        let web = &doc["_meta"]["hostvars"]["web-app-1"];
        assert_eq!((web["ansible_port"].as_u64(), web["ansible_user"].as_str()), (Some(2222), Some("admin")));
        assert!(!web["ansible_ssh_common_args"].as_str().unwrap().contains("ProxyCommand"));
    }

    #[test]
    fn a_lab_node_unreachable_from_its_namespace_is_refused() {
        let node: Node = serde_json::from_str(
            r#"{"cluster":"lz","group":"node","name":"lz-1","provider":"linode","status":"running","access":{"method":"ssh","host":"203.0.113.9","netns":"lct-no-such-lab-outside"}}"#,
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let e = inventory(&[node], &SshFiles::new(dir.path())).unwrap_err();
        assert!(
            e.starts_with("node lz-1: refusing to connect to 203.0.113.9") && e.contains("LCT_LINODE_SSH_NETNS"),
            "{e}"
        );
    }
}
