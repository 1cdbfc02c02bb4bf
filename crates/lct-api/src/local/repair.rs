//! Bringing reality in line with the state: what a dead run left half-done, machines that
//! should run and do not, and the whole lab taken down.

use std::collections::BTreeSet;
use std::fs;

use lct_core::record::{Name, Node, Status, Volume};

use super::images::Images;
use super::lab::{Lab, OUTSIDE_IPV4, OUTSIDE_IPV6};
use super::machine::Machine;
use super::net;
use super::state::{CloudState, set_status};
use super::{LabStatus, LocalCloud, Seed};
use crate::ProviderError;
use crate::cloudinit::FirstBoot;

impl LocalCloud {
    /// Brings reality in line with the state. Unfinished nodes (provisioning, deleting) are
    /// always finished; with `thorough`, every node and volume is checked step by step.
    pub(super) fn repair(&self, state: &mut CloudState, thorough: bool) -> Result<(), ProviderError> {
        if state.nodes.is_empty() && state.volumes.is_empty() && !state.lab_ready && !thorough {
            return Ok(());
        }
        let lab = Lab::new(&state.lab);
        if !state.lab_ready || thorough || !net::netns_exists(&lab.lab_ns()) || !net::netns_exists(&lab.outside_ns()) {
            lab.ensure()?;
            state.lab_ready = true;
            self.save(state)?;
        }
        let names: Vec<Name> = state.nodes.iter().map(|n| n.name.clone()).collect();
        for name in names {
            let node = state.nodes.iter().find(|n| n.name == name).cloned().expect("listed");
            match node.status {
                Status::Deleting => self.finish_delete(state, &node)?,
                Status::Provisioning => {
                    tracing::info!(node = %node.name, "finishing a node a previous run left half-made");
                    lab.ensure_node(&node, true)?;
                    self.ensure_machine(state, &node, Seed::Merged(None), true)?;
                    let done = if state.machines.contains(&node.name) { Status::Booting } else { Status::Running };
                    set_status(state, &node.name, done);
                    self.save(state)?;
                }
                status => {
                    let up = matches!(status, Status::Running | Status::Booting);
                    if thorough || !net::netns_exists(&lab.node_ns(&node.name)) {
                        lab.ensure_node(&node, up)?;
                    }
                    if state.machines.contains(&node.name) && up != self.machine(state, &node).pid().is_some() {
                        tracing::info!(node = %node.name, "the machine is not as recorded: {}", if up { "booting it" } else { "stopping it" });
                        self.ensure_machine(state, &node, Seed::Merged(None), up)?;
                    }
                }
            }
        }
        if thorough {
            let mut keep: BTreeSet<String> = state.nodes.iter().map(|n| lab.node_ns(&n.name)).collect();
            keep.extend([lab.lab_ns(), lab.outside_ns()]);
            lab.sweep(&keep)?;
            for volume in state.volumes.clone() {
                match &volume.attached_to {
                    Some(_) => {
                        self.attach_loop(&volume.label)?;
                    }
                    None => self.detach_loops(&volume.label)?,
                }
            }
        }
        Ok(())
    }

    pub(super) fn finish_delete(&self, state: &mut CloudState, node: &Node) -> Result<(), ProviderError> {
        let lab = Lab::new(&state.lab);
        // A deleted Linode leaves its volumes behind, detached; so does a local node.
        let attached: Vec<Name> = state
            .volumes
            .iter()
            .filter(|v| v.attached_to.as_ref() == Some(&node.name))
            .map(|v| v.label.clone())
            .collect();
        // The machine first: its root may be one of those volumes (a disk it boots), mounted
        // on a loop device that can only go once it is unmounted.
        if state.machines.contains(&node.name) {
            self.machine(state, node).remove()?;
            lct_core::ssh::SshFiles::of_state_or(self.state_dir())
                .and_then(|ssh| ssh.forget_host(&ssh_names(node)))
                .map_err(|error| ProviderError::Io { what: "lct's known_hosts".into(), error })?;
        }
        for label in attached {
            self.detach_loops(&label)?;
            let v = state.volumes.iter_mut().find(|v| v.label == label).expect("listed");
            v.attached_to = None;
            v.path = None;
        }
        lab.remove_node(node)?;
        state.nodes.retain(|n| n.name != node.name);
        state.machines.remove(&node.name);
        self.save(state)
    }

    pub(super) fn machine(&self, state: &CloudState, node: &Node) -> Machine {
        Machine::new(&self.dir, node, &Lab::new(&state.lab).node_ns(&node.name), &state.lab)
    }

    /// A machine node's container: booted (its first-boot files written once, with a new
    /// host key pinned in lct's known_hosts) or stopped. Nothing for namespace nodes.
    pub(super) fn ensure_machine(
        &self,
        state: &CloudState,
        node: &Node,
        seed: Seed<'_>,
        up: bool,
    ) -> Result<(), ProviderError> {
        if !state.machines.contains(&node.name) {
            return Ok(());
        }
        let io = |error| ProviderError::Io { what: "lct's SSH files".into(), error };
        let ssh = lct_core::ssh::SshFiles::of_state_or(self.state_dir()).map_err(io)?;
        let first_boot = || -> Result<FirstBoot, ProviderError> {
            let host_key = lct_core::ssh::generate_key(node.name.as_str()).map_err(io)?;
            ssh.trust_host(&ssh_names(node), &host_key.public).map_err(io)?;
            Ok(FirstBoot {
                hostname: node.name.clone(),
                host_key,
                authorized_keys: ssh.authorized_keys().map_err(io)?,
                user_data: match seed {
                    Seed::Merged(u) => u.map(String::from),
                    Seed::Raw(_) => None,
                },
                raw_user_data: match seed {
                    Seed::Raw(u) => Some(u.to_string()),
                    Seed::Merged(_) => None,
                },
            })
        };
        let machine = self.machine(state, node);
        if up && machine.pid().is_none() && machine.prepared() {
            // It booted before: like a computer that reboots, it starts with a fresh network
            // stack (no ruleset, conntrack entry or sysctl of its last boot), not the namespace
            // its last boot left behind.
            Lab::new(&state.lab).renew_node(node)?;
        }
        machine.ensure(&Images::new(&self.dir), node, first_boot, up)?;
        if up {
            for v in state.volumes.iter().filter(|v| v.attached_to.as_ref() == Some(&node.name)) {
                machine.add_volume(v.label.as_str(), &self.device_link(&v.label))?;
            }
        }
        Ok(())
    }

    /// Takes a volume's device out of the machine it is attached to, if that is a machine.
    pub(super) fn remove_from_machine(&self, state: &CloudState, volume: &Volume) -> Result<(), ProviderError> {
        let node = volume.attached_to.as_ref().and_then(|n| state.nodes.iter().find(|x| &x.name == n));
        match node {
            Some(n) if state.machines.contains(&n.name) => self.machine(state, n).remove_volume(volume.label.as_str()),
            _ => Ok(()),
        }
    }

    /// Finishes what a dead run left and boots the machines that should run and do not: what
    /// a machine's supervisor asks for when the machine rebooted itself.
    pub fn repair_after_reboot(&self) -> Result<(), ProviderError> {
        self.begin().map(drop)
    }

    /// Repairs every node and volume, step by step.
    pub fn repair_all(&self) -> Result<(), ProviderError> {
        let (_lock, mut state) = self.begin()?;
        self.repair(&mut state, true)
    }

    /// Deletes every node and volume, the lab and the outside namespaces, and the state.
    pub fn destroy(&self) -> Result<(), ProviderError> {
        let (_lock, mut state) = self.begin()?;
        for node in state.nodes.clone() {
            set_status(&mut state, &node.name, Status::Deleting);
            self.save(&state)?;
            self.finish_delete(&mut state, &node)?;
        }
        // Machines no node of the state owns (its file lost, or older than they are): their
        // containers and overlays go too.
        for machine in Machine::all_on_disk(&self.dir, &state.lab) {
            tracing::warn!(machine = %machine.dir().display(), "removing a machine of this lab that no node owns");
            machine.remove()?;
        }
        for volume in state.volumes.clone() {
            self.detach_loops(&volume.label)?;
            let _ = fs::remove_file(self.backing_file(&volume.label));
        }
        // Volume files no record names (a state file lost): their loop devices go too (after
        // the machines above, whose roots they may have been).
        if let Ok(files) = fs::read_dir(self.dir.join("volumes")) {
            for file in files.flatten().map(|f| f.path()) {
                for dev in net::loops_of(&file)? {
                    tracing::warn!(device = %dev, file = %file.display(), "detaching a loop device of a volume no record names");
                    net::run("losetup", &["--detach", &dev])?;
                }
            }
        }
        let lab = Lab::new(&state.lab);
        lab.sweep(&[lab.lab_ns(), lab.outside_ns()].into())?;
        lab.remove()?;
        let _ = fs::remove_file(self.state_path());
        let _ = fs::remove_dir_all(self.dir.join("dev"));
        let _ = fs::remove_dir_all(self.dir.join("volumes"));
        let _ = fs::remove_dir(self.dir.join("machines"));
        Ok(())
    }

    /// A summary of the lab: its name, namespaces and whether they exist.
    pub fn status(&self) -> Result<LabStatus, ProviderError> {
        let state = self.load()?;
        let lab = Lab::new(&state.lab);
        Ok(LabStatus {
            lab: state.lab.clone(),
            lab_namespace: lab.lab_ns(),
            lab_namespace_exists: net::netns_exists(&lab.lab_ns()),
            outside_namespace: lab.outside_ns(),
            outside_namespace_exists: net::netns_exists(&lab.outside_ns()),
            outside_ipv4: OUTSIDE_IPV4,
            outside_ipv6: OUTSIDE_IPV6,
            nodes: state.nodes.len(),
            volumes: state.volumes.len(),
        })
    }
}

/// The names a node's host key is known by: its name and addresses.
pub(super) fn ssh_names(node: &Node) -> Vec<String> {
    let mut names = vec![node.name.to_string()];
    names.extend(node.public_ipv4.iter().map(|a| a.to_string()));
    // A private address names one machine only in the default region: other regions hand
    // out the same range, and pinning zk-3's key under 192.168.128.1 would replace the pin
    // of zk-2 (region b, the same address), whose SSH then fails host-key checking.
    if node.region == super::region::REGION {
        names.extend(node.private_ipv4.iter().map(|a| a.to_string()));
    }
    names.extend(node.public_ipv6.iter().map(|a| a.to_string()));
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_address_pins_a_host_key_only_where_it_is_unique() {
        let node = |name: &str, region: &str| -> Node {
            serde_json::from_value(serde_json::json!({
                "cluster": "zk", "group": "server", "name": name, "provider": "local", "status": "running",
                "region": region, "private_ipv4": ["192.168.128.1"], "public_ipv4": ["203.0.113.4"],
            }))
            .unwrap()
        };
        assert_eq!(ssh_names(&node("zk-1", "local")), ["zk-1", "203.0.113.4", "192.168.128.1"]);
        // Regions' ranges overlap: 192.168.128.1 is also another region's machine.
        assert_eq!(ssh_names(&node("zk-2", "b")), ["zk-2", "203.0.113.4"]);
    }
}
