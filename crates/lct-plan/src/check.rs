//! What a plan may hand to a command line, checked at `validate` for every provider: each
//! value that reaches a shell or a program's arguments on a node or the controller fits a
//! strict grammar here, or travels as an argument vector (never spliced into `sh -c`).
//!
//! * `packages`: Debian's grammar ([`lct_core::debian`]), so apt never takes one for an
//!   option; the `packages` action passes them as arguments after `--`.
//! * `downloads`: an HTTPS URL without spaces or control characters and a 64-digit SHA-256
//!   (hooks get them as `LCT_DOWNLOAD_N_URL` / `_SHA256`).
//! * `depends_on` roles and `offers` names: identifiers, since they become environment
//!   names (`LCT_OFFER_ROLE_NAME`) on the hooks' command lines.
//! * `offers`: no secret parameter, since offered values reach dependents' hooks as
//!   environment on their command lines (secrets travel on standard input only).
//!
//! Names of groups, nodes, volumes and services are [`lct_core::record::Name`]s already,
//! hook scripts are paths inside the plan, and parameters are typed values that reach hooks
//! as single `NAME=VALUE` arguments.

use crate::plan::{Action, Plan};

/// A refusal: the field and why.
pub type Refusal = (String, String);

/// Every check of this module.
pub fn plan_inputs(plan: &Plan) -> Result<(), Refusal> {
    for (i, p) in plan.packages.iter().enumerate() {
        lct_core::debian::check_package(p).map_err(|e| (format!("packages[{i}]"), e.to_string()))?;
    }
    for (i, d) in plan.downloads.iter().enumerate() {
        check_url(&d.url).map_err(|m| (format!("downloads[{i}].url"), m))?;
        if d.sha256.len() != 64 || !d.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err((format!("downloads[{i}].sha256"), format!("{:?}: 64 hexadecimal digits", d.sha256)));
        }
    }
    for role in plan.depends_on.keys() {
        check_identifier(role).map_err(|m| (format!("depends_on.{role}"), m))?;
    }
    let secrets: Vec<&str> = plan.parameters.iter().filter(|(_, p)| p.secret).map(|(name, _)| name.as_str()).collect();
    for (name, offer) in &plan.offers {
        check_identifier(name).map_err(|m| (format!("offers.{name}"), m))?;
        if reads_any(offer, &secrets) {
            return Err((
                format!("offers.{name}"),
                "an offered value reaches the dependents' hooks on their command line (LCT_OFFER_*): \
                 it cannot carry a secret parameter"
                    .into(),
            ));
        }
    }
    Ok(())
}

/// Whether the plan has nodes or the controller run anything it supplies: shell hooks,
/// playbooks, or a built-in action fed with its strings (`packages`; and offering
/// `update_node`, whose offers become `lct-dns update`'s arguments on that node when any
/// cluster's `dns` action runs). A plan from elsewhere without a pin is trusted with that
/// only on request (`--trust-hooks`).
pub fn runs_plan_supplied_commands(plan: &Plan) -> bool {
    plan.offers.contains_key("update_node")
        || plan.hooks.values().flatten().any(|h| {
            h.script.is_some() || h.run.is_some() || h.playbook.is_some() || h.action == Some(Action::Packages)
        })
}

/// Whether a template reads any of `names` (a secret parameter, say).
pub fn reads_any(template: &str, names: &[&str]) -> bool {
    let env = minijinja::Environment::new();
    env.template_from_str(template)
        .map(|t| t.undeclared_variables(false).iter().any(|v| names.contains(&v.as_str())))
        .unwrap_or(false)
}

/// A name that becomes part of an environment variable's: a letter, then letters, digits,
/// `_` and `-`.
fn check_identifier(s: &str) -> Result<(), String> {
    let ok = s.as_bytes().first().is_some_and(u8::is_ascii_alphabetic)
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok { Ok(()) } else { Err(format!("{s:?}: a letter, then letters, digits, '_' and '-'")) }
}

/// An HTTPS URL of printable ASCII without spaces or quotes.
fn check_url(url: &str) -> Result<(), String> {
    let rest = url.strip_prefix("https://").ok_or_else(|| format!("{url:?}: an https:// URL"))?;
    if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_graphic() && !b"\"'`\\<>".contains(&b)) {
        return Err(format!("{url:?}: a URL has no spaces, quotes or control characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(extra: &str) -> Option<Refusal> {
        let text = format!("description: x\ngroups:\n  server: {{count: 1}}\n{extra}");
        plan_inputs(&crate::parse(&text, "p.yaml").unwrap()).err()
    }

    #[test]
    fn plan_values_that_would_reach_a_command_line_are_checked() {
        assert_eq!(refusal("packages: [htop, zookeeperd=3.8.0-11]\n"), None);
        let (field, why) = refusal("packages: [htop, \"-oAPT::Update::Pre-Invoke::=touch /tmp/x\"]\n").unwrap();
        assert_eq!(field, "packages[1]");
        assert!(why.contains("is not a Debian package"), "{why}");
        assert_eq!(refusal("packages: [\"htop; id\"]\n").unwrap().0, "packages[0]");
        let download = "downloads: [{url: \"https://example.org/x.tgz\", sha256: SHA}]\n";
        assert_eq!(refusal(&download.replace("SHA", &"a".repeat(64))), None);
        assert_eq!(refusal(&download.replace("SHA", "abc")).unwrap().0, "downloads[0].sha256");
        let bad_url = download.replace("https://example.org/x.tgz", "-o/etc/passwd").replace("SHA", &"a".repeat(64));
        assert_eq!(refusal(&bad_url).unwrap().0, "downloads[0].url");
        assert_eq!(refusal("offers:\n  \"x=1 y\": a\n").unwrap().0, "offers.x=1 y");
        assert_eq!(refusal("depends_on:\n  \"-x\": {cluster: a, services: [a.b]}\n").unwrap().0, "depends_on.-x");
        let remote = |extra: &str| {
            let text = format!("description: x\ngroups:\n  server: {{count: 1}}\n{extra}");
            runs_plan_supplied_commands(&crate::parse(&text, "p.yaml").unwrap())
        };
        assert!(!remote("hooks:\n  created: [{action: hosts}, {action: firewall}]\n"));
        assert!(remote("packages: [htop]\nhooks:\n  created: [{action: packages}]\n"));
        assert!(remote("hooks:\n  created: [{run: id, on: [server]}]\n"));
        assert!(remote("offers:\n  update_node: \"{{ nodes.server[0].name }}\"\n"));
        let secret =
            "parameters:\n  pw: {type: string, secret: true, description: x}\noffers:\n  url: \"{{ pw }}@db\"\n";
        assert_eq!(refusal(secret).unwrap().0, "offers.url");
    }
}
