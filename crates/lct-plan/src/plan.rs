//! The cluster plan format: what a cluster is made of, as YAML (or JSON) an operator writes.
//!
//! A plan declares parameters (typed, with defaults and documentation), node groups (count,
//! type, region, image, volumes, tags, host-name template, the services they expose),
//! firewall flows, names, dependencies on other clusters, the values it offers its
//! dependents (templates over its inventory, as Juju relations hand data over) and hooks per
//! event. Unknown fields are errors; every error names the file, line, column and field.
//! `schemas/plan.schema.json` is generated from these types, for editors.

use std::collections::BTreeMap;

use lct_core::record::{DnsPublish, Name, PortSpec};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A cluster plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// What the plan makes, in a sentence or two (`lct-plan show`).
    pub description: String,
    /// What the plan downloads from outside Debian's archive, said plainly (shown before
    /// anything runs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub downloads: Vec<Download>,
    /// Values the operator may set (`--set NAME=VALUE`), by name.
    #[serde(default)]
    pub parameters: BTreeMap<String, Parameter>,
    /// The node groups, by name (a group name is a label: `server`, `namenode`).
    pub groups: BTreeMap<Name, Group>,
    /// Who reaches which services.
    #[serde(default)]
    pub firewall: Firewall,
    /// How the nodes are named.
    #[serde(default)]
    pub names: Names,
    /// Clusters this one uses, by the role they play for it (`zookeeper`).
    #[serde(default)]
    pub depends_on: BTreeMap<String, Dependency>,
    /// Values this cluster offers its dependents, by name: templates over its inventory.
    #[serde(default)]
    pub offers: BTreeMap<String, String>,
    /// What runs on each event, in order.
    #[serde(default)]
    pub hooks: BTreeMap<Event, Vec<Hook>>,
    /// Debian packages the plan's hooks install (added to the lab's mirror before they run):
    /// `NAME` or `NAME=VERSION` in Debian's grammar, checked at validate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<String>,
}

impl Plan {
    /// The group a bake node stands for (`lct-plan bake`): the first whose image is `baked`,
    /// else the first.
    pub fn bake_group(&self) -> &Name {
        self.groups
            .iter()
            .find(|(_, g)| g.image == "baked")
            .or_else(|| self.groups.iter().next())
            .map(|(name, _)| name)
            .expect("a valid plan has a group")
    }
}

/// Something a plan fetches from outside Debian's archive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Download {
    /// An `https://` URL (no spaces, quotes or control characters).
    pub url: String,
    /// Its SHA-256, checked before use.
    pub sha256: String,
    #[serde(default)]
    pub description: String,
}

/// A parameter's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ParameterType {
    String,
    Integer,
    Boolean,
}

/// A value the operator may set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Parameter {
    #[serde(rename = "type")]
    pub kind: ParameterType,
    /// Without a default, the operator must set it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<serde_json::Value>,
    pub description: String,
    /// A secret (a password) is never shown, logged or put in an event log.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub secret: bool,
    /// Without a default and not set: a random value (24 letters and digits) made once
    /// and kept 0600 with the cluster's state.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub generate: bool,
    /// For integers: the smallest and largest values allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum: Option<i64>,
    /// For strings: a regular expression (Rust's `regex` syntax, matched in linear time) the
    /// whole value must match, checked before anything is made (`^` and `$` are implied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
}

/// The most nodes one group may have: a count past it (written, templated or asked of
/// `scale`) is refused before a name is rendered or a node is asked for, so a plan cannot keep
/// lct busy for hours or ask a provider for billions of nodes.
pub const MAX_GROUP_NODES: u32 = 1000;

/// A count: a number, or a template giving one (`"{{ servers }}"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Count {
    Fixed(u32),
    Template(String),
}

/// A group of nodes of one role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Group {
    pub count: Count,
    /// Linode type (ignored by the local cloud).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub node_type: Option<String>,
    /// The group's region (on providers with a choice of region: Linode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Regions the group spans (any provider; the local cloud's are private networks of
    /// their own): node i (from 1) goes to `regions[(i-1) % len]`, round-robin, unless
    /// `per_region` says otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<String>,
    /// With `regions`: N nodes in each region in turn (the first N in the first region); a
    /// count past N for every region is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_region: Option<u32>,
    /// Node image: `debian-12` (a machine; on Linode `linode/debian12`), `lct/netns`;
    /// `baked` (the image `lct-plan bake` made of this plan for this cluster), or an lct
    /// image: `REPO::NAME`, an image file (`/...`, `./...`) or an `https://` URL.
    #[serde(default = "debian12")]
    pub image: String,
    /// Host-name template; `cluster`, `group` and `index` (from 1) are defined.
    #[serde(default = "hostname")]
    pub hostname: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeSpec>,
    /// Services the group's nodes expose, by name.
    #[serde(default)]
    pub services: BTreeMap<Name, Service>,
    /// `reconcile` makes a node of this group the provider lost again, under the same name
    /// (after `node-removed`; its `node-added` hooks bring the replacement in); without it,
    /// `reconcile` only says the group is short.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replace_lost: bool,
}

fn debian12() -> String {
    "debian-12".into()
}

fn hostname() -> String {
    "{{ cluster }}-{{ index }}".into()
}

/// A block volume each node of a group gets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeSpec {
    /// Its name per node (`data`: the volume of zk-1 is `zk-1-data`).
    pub name: Name,
    /// Size, e.g. `10G`, `512M`.
    pub size: String,
}

/// A service: ports a group listens on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub ports: Vec<PortSpec>,
    #[serde(default)]
    pub description: String,
}

/// The firewall: default-deny inbound but SSH from the admin networks and the flows allowed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Firewall {
    /// Networks that reach SSH (and nothing else unless allowed).
    #[serde(default = "admin_default")]
    pub admin: Vec<String>,
    #[serde(default)]
    pub allow: Vec<Flow>,
}

impl Default for Firewall {
    fn default() -> Self {
        Firewall { admin: admin_default(), allow: Vec::new() }
    }
}

fn admin_default() -> Vec<String> {
    vec!["{{ admin_cidr }}".into()]
}

/// One allowed flow: from whom, to which of this cluster's services.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Flow {
    /// `self` (this cluster's nodes), `self:GROUP`, `dependents` (every cluster depending on
    /// this one for this service), or an address prefix.
    pub from: String,
    /// `GROUP.SERVICE`.
    pub to: String,
}

/// How the nodes are named.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Names {
    /// The cluster's domain (template); default: lct's naming rule (`CLUSTER.PARENT`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Hosts-file entries for private addresses (and public ones).
    #[serde(default = "yes")]
    pub hosts_private: bool,
    #[serde(default)]
    pub hosts_public: bool,
    /// DNS: which addresses are published (split, private, public, none).
    #[serde(default)]
    pub dns: DnsPublish,
}

impl Default for Names {
    fn default() -> Self {
        Names { domain: None, hosts_private: true, hosts_public: false, dns: DnsPublish::Split }
    }
}

fn yes() -> bool {
    true
}

impl Names {
    /// What the cluster record carries for lct-hosts and lct-dns.
    pub fn policy(&self) -> lct_core::record::NamePolicy {
        lct_core::record::NamePolicy {
            hosts_private: self.hosts_private,
            hosts_public: self.hosts_public,
            dns: self.dns,
        }
    }
}

/// A cluster this one uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Dependency {
    /// The cluster's name (a template: usually a parameter, `{{ zookeeper_cluster }}`).
    pub cluster: String,
    /// The services of it this cluster uses: `GROUP.SERVICE`, each one the other cluster's
    /// plan opens to dependents (a `firewall.allow` flow `from: dependents`); its nodes
    /// admit this cluster's to those services' ports, and to nothing else.
    pub services: Vec<String>,
    /// The values it offers that this cluster reads.
    #[serde(default)]
    pub uses: Vec<String>,
    /// The plan the other cluster is made from (`package:NAME`, a path beside this plan, or
    /// a URL): `validate` checks `services` and `uses` against it. `create` checks them
    /// against the plan the cluster was really made from, whatever this says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
}

/// Events a cluster goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Event {
    Created,
    Starting,
    Started,
    Stopping,
    Stopped,
    NodeAdded,
    // Nodes a scale is about to delete, raised while they still run (a member leaves its
    // ensemble before its node goes). A plain comment: a doc comment would change the
    // schema's plain enum of event names.
    NodeRemoving,
    NodeRemoved,
    DependencyChanged,
    DependentChanged,
    Destroying,
    /// On the bake node only (`lct-plan bake`), after the plan's packages and lct's
    /// programs are installed and before the disk is generalized and imaged: downloads and
    /// other image-time work (the node's names and addresses are the bake node's, not a
    /// cluster's).
    Baked,
}

impl Event {
    pub const ALL: [Event; 12] = [
        Event::Created,
        Event::Starting,
        Event::Started,
        Event::Stopping,
        Event::Stopped,
        Event::NodeAdded,
        Event::NodeRemoving,
        Event::NodeRemoved,
        Event::DependencyChanged,
        Event::DependentChanged,
        Event::Destroying,
        Event::Baked,
    ];

    /// Its name in plans, logs and `LCT_EVENT`.
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Created => "created",
            Event::Starting => "starting",
            Event::Started => "started",
            Event::Stopping => "stopping",
            Event::Stopped => "stopped",
            Event::NodeAdded => "node-added",
            Event::NodeRemoving => "node-removing",
            Event::NodeRemoved => "node-removed",
            Event::DependencyChanged => "dependency-changed",
            Event::DependentChanged => "dependent-changed",
            Event::Destroying => "destroying",
            Event::Baked => "baked",
        }
    }
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Event {
    type Err = String;

    fn from_str(s: &str) -> Result<Event, String> {
        Event::ALL.into_iter().find(|e| e.as_str() == s).ok_or_else(|| {
            let names: Vec<&str> = Event::ALL.iter().map(|e| e.as_str()).collect();
            format!("no event {s:?}; there are: {}", names.join(", "))
        })
    }
}

/// One hook: a built-in action, a script shipped with the plan (run by its `#!` line), a
/// script written inline (`run:`, what plans by URL use so their pin covers it), or an
/// Ansible playbook shipped with the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Hook {
    /// A built-in action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// A shell script shipped with the plan (a path inside it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,
    /// A script written here (`#!` line optional: `sh` without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// An Ansible playbook shipped with the plan, run on the controller with the cluster's
    /// inventory (`lct-inventory ansible`); its plays name their hosts (`server`, `zk_server`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub playbook: Option<String>,
    /// Where a script runs: on every node of these groups (over SSH), in parallel; empty:
    /// on the controller.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on: Vec<Name>,
}

/// lct's built-in actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// `/etc/hosts` on every node of the cluster and its dependents.
    Hosts,
    /// The firewall of every node of the cluster, its dependencies and dependents.
    Firewall,
    /// The cluster's names in lct-dns.
    Dns,
    /// lct's node-side programs onto the nodes.
    Install,
    /// The plan's packages into the lab's mirror.
    Packages,
    /// The WireGuard mesh across regions (lct-mesh sync) over this cluster, its dependencies
    /// and dependents, and every cluster already in the mesh: nodes that came join, nodes
    /// that went leave, a region whose leader went gets another.
    #[serde(rename = "mesh-sync")]
    MeshSync,
}
