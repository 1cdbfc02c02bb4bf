//! Instances that are real: with a backing, each instance the double creates from an image
//! is a local machine node (its addresses are the machine's, its `metadata.user_data` the
//! machine's cloud-init seed), and boot, shutdown and delete act on the machine. So the whole
//! Linode path (API calls, first boot, SSH, hooks, hosts, firewall) runs here for real.

use lct_api::Provider;
use lct_api::local::{LocalCloud, Seed};
use lct_core::record::NodeSpec;
use serde_json::{Value, json};

/// The cluster the backing machines are in, in the local cloud.
pub const BACKING_CLUSTER: &str = "linode-double";

/// What backs the double's instances.
#[derive(Debug, Clone)]
pub struct Backing {
    pub local: LocalCloud,
}

impl Backing {
    /// A machine for a new instance `v` (made from `body`): its addresses, IPv4 (public
    /// first) and IPv6.
    pub fn create(&self, body: &Value, v: &Value) -> Result<(Vec<String>, String), String> {
        let user_data = body["metadata"]["user_data"]
            .as_str()
            .and_then(|b| data_encoding::BASE64.decode(b.as_bytes()).ok())
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
        let spec = NodeSpec {
            cluster: BACKING_CLUSTER.parse().expect("a label"),
            group: "node".parse().expect("a label"),
            name: v["label"].as_str().unwrap_or_default().parse().map_err(|e| format!("label: {e}"))?,
            // The instance's Linode region is the machine's region in the lab: a private
            // network of its own, whose addresses overlap other regions'.
            region: v["region"].as_str().map(String::from),
            node_type: None,
            image: Some("debian-12".into()),
            tags: vec![],
            user_data: None,
        };
        let seed = match &user_data {
            Some(doc) => Seed::Raw(doc),
            None => Seed::Merged(None),
        };
        let node = self.local.create_seeded(&spec, seed).map_err(|e| e.to_string())?;
        let mut ipv4: Vec<String> = node.public_ipv4.iter().map(|a| a.to_string()).collect();
        ipv4.extend(node.private_ipv4.iter().map(|a| a.to_string()));
        let ipv6 = node.public_ipv6.first().map(|a| format!("{a}/128")).unwrap_or_default();
        Ok((ipv4, ipv6))
    }

    /// Boots, shuts down or reboots the machine of instance `label`.
    pub fn power(&self, label: &str, action: &str) -> Result<(), String> {
        let Ok(name) = label.parse() else { return Ok(()) };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        runtime
            .block_on(async {
                if action != "boot" {
                    self.local.stop(&name).await?;
                }
                if action != "shutdown" {
                    self.local.start(&name).await?;
                }
                Ok::<_, lct_api::ProviderError>(())
            })
            .map_err(|e| e.to_string())
    }

    /// Deletes the machine of instance `label`.
    pub fn delete(&self, label: &str) -> Result<(), String> {
        let Ok(name) = label.parse() else { return Ok(()) };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        runtime.block_on(self.local.delete(&name)).map(drop).map_err(|e| e.to_string())
    }
}

/// The double's answer with the machine's addresses.
pub fn with_addresses(mut v: Value, ipv4: &[String], ipv6: &str) -> Value {
    v["ipv4"] = json!(ipv4);
    v["ipv6"] = json!(ipv6);
    v
}
