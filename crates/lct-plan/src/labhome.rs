//! Which machine's lab holds a local-cloud cluster: recorded in its `cluster.json` when made,
//! and checked before any operation, so that a controller sharing the store from another
//! machine (which sees none of the lab's nodes) never takes them for lost and makes them anew
//! in its own lab.

use anyhow::bail;
use serde::{Deserialize, Serialize};

/// The lab a local-cloud cluster's nodes live in: the machine (its systemd machine id, or its
/// host name where there is none) and the lab's name on it (`LCT_LAB`, default `lct`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabHome {
    pub machine: String,
    pub lab: String,
}

impl LabHome {
    /// This machine and the lab `LCT_LAB` names here.
    pub fn here() -> anyhow::Result<LabHome> {
        let lab = std::env::var("LCT_LAB").ok().filter(|l| !l.is_empty()).unwrap_or_else(|| "lct".into());
        Ok(LabHome { machine: this_machine()?, lab })
    }

    /// Fails, naming both, unless `self` (a cluster's lab) is `here`: what `doing` would do
    /// there acts on a lab this machine cannot reach.
    pub fn check_is(&self, here: &LabHome, cluster: &str) -> anyhow::Result<()> {
        if self == here {
            return Ok(());
        }
        bail!(
            "cluster {cluster} is on the local cloud of machine {} (lab {}), not this one (machine {}, lab {}): \
             its nodes are reachable only there; run lct-plan on that machine (with LCT_LAB={})",
            self.machine,
            self.lab,
            here.machine,
            here.lab,
            self.lab
        )
    }
}

/// The machine's identity: `/etc/machine-id` (made once per installation; the same for
/// every controller process here), or the host name on a system without one.
fn this_machine() -> anyhow::Result<String> {
    if let Ok(id) = std::fs::read_to_string("/etc/machine-id") {
        let id = id.trim();
        if !id.is_empty() {
            return Ok(format!("machine-id:{id}"));
        }
    }
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map_err(|e| anyhow::anyhow!("this machine has neither /etc/machine-id nor a host name: {e}"))?;
    let name = name.trim();
    if name.is_empty() {
        bail!("this machine has neither /etc/machine-id nor a host name: a local-cloud cluster cannot be tied to it");
    }
    Ok(format!("host:{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lab(machine: &str, lab: &str) -> LabHome {
        LabHome { machine: machine.into(), lab: lab.into() }
    }

    #[test]
    fn only_the_same_machine_and_lab_pass() {
        let home = lab("machine-id:aa", "lct");
        assert!(home.check_is(&lab("machine-id:aa", "lct"), "zk").is_ok());
        let e = home.check_is(&lab("machine-id:bb", "lct"), "zk").unwrap_err().to_string();
        assert!(e.contains("cluster zk is on the local cloud of machine machine-id:aa"), "{e}");
        assert!(e.contains("not this one (machine machine-id:bb"), "{e}");
        let e = home.check_is(&lab("machine-id:aa", "b"), "zk").unwrap_err().to_string();
        assert!(e.contains("LCT_LAB=lct"), "{e}");
    }

    #[test]
    fn here_is_stable_and_named() {
        let (a, b) = (LabHome::here().unwrap(), LabHome::here().unwrap());
        assert_eq!(a, b);
        assert!(a.machine.starts_with("machine-id:") || a.machine.starts_with("host:"), "{a:?}");
    }
}
