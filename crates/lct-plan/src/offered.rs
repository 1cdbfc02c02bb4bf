//! What a cluster opens to its dependents, and the check that a dependent asks for nothing
//! else.
//!
//! A dependent's `depends_on.ROLE.services` become accept rules on the dependency's nodes
//! (lct-fw admits the dependent's nodes to those services' ports). The dependency's plan
//! says what it opens to dependents (`firewall.allow` flows `from: dependents`); naming any
//! other service (ZooKeeper's quorum ports, Patroni's REST API) is refused with the reason,
//! at `validate` when the dependent names the plan of its dependency (`depends_on.ROLE.plan`),
//! and always at `create` and `diff`, against the plan the dependency was really made from.

use std::collections::BTreeMap;

use lct_core::record::PortSpec;

use crate::plan::{Dependency, Plan};
use crate::suggest::did_you_mean;

/// The flow source that opens a service to dependents.
const DEPENDENTS: &str = "dependents";

/// The services `plan` opens to its dependents (`GROUP.SERVICE`), with their ports.
pub fn opened_to_dependents(plan: &Plan) -> BTreeMap<String, Vec<PortSpec>> {
    plan.firewall
        .allow
        .iter()
        .filter(|flow| flow.from == DEPENDENTS)
        .filter_map(|flow| Some((flow.to.clone(), ports_of(plan, &flow.to)?)))
        .collect()
}

/// The ports of `GROUP.SERVICE` in `plan`, if it has that service.
fn ports_of(plan: &Plan, service: &str) -> Option<Vec<PortSpec>> {
    let (g, s) = service.split_once('.')?;
    let group = plan.groups.iter().find(|(name, _)| name.as_str() == g)?.1;
    Some(group.services.iter().find(|(name, _)| name.as_str() == s)?.1.ports.clone())
}

/// A refusal: the plan's field and why (a dependency asking for what is not opened to
/// it; a value of the cluster record that cannot be).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Refused {
    pub field: String,
    pub message: String,
}

/// Checks that every service dependency `role` names is one `other_plan` opens to
/// dependents, and that every value it uses is one `other_plan` offers. `other` names the
/// dependency in the reason (`cluster zk`, `package:zookeeper`).
pub fn check_dependency(role: &str, dep: &Dependency, other: &str, other_plan: &Plan) -> Result<(), Refused> {
    let opened = opened_to_dependents(other_plan);
    for (i, service) in dep.services.iter().enumerate() {
        if opened.contains_key(service) {
            continue;
        }
        let what = match ports_of(other_plan, service) {
            Some(ports) => format!("{service} ({}) is not opened to dependents by {other}", ports_list(&ports)),
            None => format!("{other} has no service {service}"),
        };
        // A typo of a service it opens is worth a suggestion; one it keeps closed is not.
        let close = did_you_mean(service, opened.keys().map(String::as_str));
        return Err(Refused {
            field: format!("depends_on.{role}.services[{i}]"),
            message: format!("{what}; it opens to dependents: {}{close}", describe(&opened)),
        });
    }
    for (i, value) in dep.uses.iter().enumerate() {
        if !other_plan.offers.contains_key(value) {
            let offers: Vec<&str> = other_plan.offers.keys().map(String::as_str).collect();
            let offers = if offers.is_empty() { "nothing".to_string() } else { offers.join(", ") };
            return Err(Refused {
                field: format!("depends_on.{role}.uses[{i}]"),
                message: format!(
                    "{other} offers no value {value:?}; it offers: {offers}{}",
                    did_you_mean(value, other_plan.offers.keys().map(String::as_str))
                ),
            });
        }
    }
    Ok(())
}

fn ports_list(ports: &[PortSpec]) -> String {
    ports.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// What a plan opens to dependents, as errors and `lct-plan show` say it:
/// `server.client (2181/tcp)`, or `nothing`.
pub fn describe(opened: &BTreeMap<String, Vec<PortSpec>>) -> String {
    if opened.is_empty() {
        return "nothing".into();
    }
    opened.iter().map(|(s, ports)| format!("{s} ({})", ports_list(ports))).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;

    const ZOOKEEPER: &str = "description: zk\ngroups:\n  server:\n    count: 3\n    services:\n      client: {ports: [2181/tcp]}\n      quorum: {ports: [2888/tcp, 3888/tcp]}\n      admin: {ports: [8080/tcp]}\nfirewall:\n  allow:\n    - {from: self, to: server.quorum}\n    - {from: dependents, to: server.client}\noffers:\n  connect: x\n";

    fn dependency(services: &[&str], uses: &[&str]) -> Dependency {
        Dependency {
            cluster: "zk".into(),
            services: services.iter().map(ToString::to_string).collect(),
            uses: uses.iter().map(ToString::to_string).collect(),
            plan: None,
        }
    }

    fn check(services: &[&str], uses: &[&str]) -> Result<(), String> {
        let zk = parse(ZOOKEEPER, "zk.yaml").unwrap();
        check_dependency("zookeeper", &dependency(services, uses), "cluster zk", &zk).map_err(|e| e.to_string())
    }

    #[test]
    fn only_what_is_opened_to_dependents_is_taken() {
        check(&["server.client"], &["connect"]).unwrap();
        check(&[], &[]).unwrap();
        assert_eq!(
            check(&["server.client", "server.quorum"], &[]).unwrap_err(),
            "depends_on.zookeeper.services[1]: server.quorum (2888/tcp, 3888/tcp) is not opened to dependents by \
             cluster zk; it opens to dependents: server.client (2181/tcp)"
        );
        // A service open to nobody, and one that does not exist.
        assert!(check(&["server.admin"], &[]).unwrap_err().contains("server.admin (8080/tcp) is not opened"));
        assert_eq!(
            check(&["server.shell"], &[]).unwrap_err(),
            "depends_on.zookeeper.services[0]: cluster zk has no service server.shell; it opens to dependents: \
             server.client (2181/tcp)"
        );
        assert_eq!(
            check(&["server.client"], &["password"]).unwrap_err(),
            "depends_on.zookeeper.uses[0]: cluster zk offers no value \"password\"; it offers: connect"
        );
    }

    #[test]
    fn a_plan_open_to_no_dependent_says_so() {
        let closed = parse(&ZOOKEEPER.replace("from: dependents", "from: self"), "zk.yaml").unwrap();
        let e = check_dependency("zookeeper", &dependency(&["server.client"], &[]), "cluster zk", &closed);
        assert!(e.unwrap_err().message.ends_with("it opens to dependents: nothing"));
    }
}
