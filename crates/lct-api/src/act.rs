//! Starting, stopping and deleting nodes named on the command line or piped in as node
//! records: each record on the provider it names (a Linode node is deleted on Linode, never
//! looked up in the local cloud), and a node that is not there is a failure unless the
//! caller says missing nodes are fine.

use lct_core::record::{Name, Node, ProviderName};

use crate::any::AnyProvider;
use crate::provider::{Provider, ProviderError};

/// A node to act on, and the provider that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: Name,
    pub provider: ProviderName,
}

/// What to do to each target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Start,
    Stop,
    Delete,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Delete => "delete",
        }
    }
}

/// Why a list of targets was refused before anything was done.
#[derive(Debug, thiserror::Error)]
#[error(
    "node {name} is on {on} (its record says so), but {chosen} was chosen (--provider or LCT_PROVIDER): nothing done"
)]
pub struct ProviderMismatch {
    pub name: Name,
    pub on: ProviderName,
    pub chosen: ProviderName,
}

/// The targets of names given on the command line (on `chosen`, else the local cloud), or
/// of node records (each on its own provider). A record on another provider than one chosen
/// explicitly is refused, for all of them, before anything is done.
pub fn targets(
    names: Vec<Name>,
    records: Vec<Node>,
    chosen: Option<ProviderName>,
) -> Result<Vec<Target>, ProviderMismatch> {
    let mut list: Vec<Target> =
        names.into_iter().map(|name| Target { name, provider: chosen.unwrap_or_default() }).collect();
    for node in records {
        if let Some(chosen) = chosen
            && chosen != node.provider
        {
            return Err(ProviderMismatch { name: node.name, on: node.provider, chosen });
        }
        list.push(Target { name: node.name, provider: node.provider });
    }
    Ok(list)
}

/// What acting on one target gave: the node as it is now (start, stop), nothing (delete),
/// or why not. A node its provider does not have is [`ProviderError::NoSuchNode`].
pub type Outcome = Result<Option<Node>, ProviderError>;

/// Acts on every target, in order, each on its own provider (made once per provider).
pub async fn act(targets: &[Target], action: Action) -> Vec<(Target, Outcome)> {
    let mut providers: Vec<(ProviderName, Result<AnyProvider, String>)> = Vec::new();
    let mut results = Vec::new();
    for target in targets {
        if !providers.iter().any(|(p, _)| *p == target.provider) {
            providers.push((target.provider, AnyProvider::from_env(target.provider).map_err(|e| e.to_string())));
        }
        let (_, provider) = providers.iter().find(|(p, _)| *p == target.provider).expect("made above");
        let outcome = match provider {
            Err(e) => Err(ProviderError::Invalid(e.clone())),
            Ok(provider) => match action {
                Action::Start => provider.start(&target.name).await.map(Some),
                Action::Stop => provider.stop(&target.name).await.map(Some),
                Action::Delete => match provider.delete(&target.name).await {
                    Ok(true) => Ok(None),
                    Ok(false) => Err(ProviderError::NoSuchNode(target.name.clone())),
                    Err(e) => Err(e),
                },
            },
        };
        results.push((target.clone(), outcome));
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, provider: &str) -> Node {
        serde_json::from_value(serde_json::json!({
            "cluster": "lz", "group": "node", "name": name, "provider": provider, "status": "running"
        }))
        .unwrap()
    }

    #[test]
    fn records_keep_their_provider_names_take_the_chosen_one() {
        let list =
            targets(vec!["a-1".parse().unwrap()], vec![node("lz-1", "linode"), node("d-1", "local")], None).unwrap();
        let got: Vec<(&str, ProviderName)> = list.iter().map(|t| (t.name.as_str(), t.provider)).collect();
        assert_eq!(got, [("a-1", ProviderName::Local), ("lz-1", ProviderName::Linode), ("d-1", ProviderName::Local)]);
        let e =
            targets(vec![], vec![node("d-1", "local"), node("lz-1", "linode")], Some(ProviderName::Local)).unwrap_err();
        assert_eq!(e.name.as_str(), "lz-1");
        assert!(e.to_string().contains("is on linode"), "{e}");
    }
}
