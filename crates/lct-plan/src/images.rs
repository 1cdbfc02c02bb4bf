//! Groups' images: `baked` resolved to the entry `lct-plan bake` made for the cluster, an
//! lct image (`REPO::NAME`, a file, a URL) taken as written; each prepared by the provider
//! (found, checked whole, its architecture and size checked, made ready) before any node is
//! made, an error naming the plan's field otherwise. Also where bakes are kept.
//!
//! ```text
//! STATE/images/repo/               the default repository (LCT_IMAGE_REPO, --repo)
//! STATE/images/bakes/NAME.json     the last bake for cluster NAME (a plan-baked record)
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use lct_api::disk_image::LctImage;
use lct_api::{AnyProvider, Provider};
use lct_core::record::{Name, ProviderName};

use crate::load::Loaded;
use crate::plan::Plan;
use crate::records::PlanBaked;
use crate::state::{Home, Tools};

/// The repository bakes go to unless told (`--repo`, `LCT_IMAGE_REPO`).
pub fn default_repo(home: &Home) -> PathBuf {
    home.dir.join("images").join("repo")
}

fn bake_key(name: &Name) -> lct_core::store::Key {
    lct_core::store::Key::new(format!("images/bakes/{name}.json")).expect("a cluster's name makes a key")
}

/// Keeps `baked` as cluster `name`'s bake.
pub fn save_bake(home: &Home, baked: &PlanBaked) -> anyhow::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(baked)?;
    bytes.push(b'\n');
    home.store.put(&bake_key(&baked.name), &bytes, lct_core::store::Secrecy::Secret)?;
    Ok(())
}

/// Cluster `name`'s last bake, if any.
pub fn load_bake(home: &Home, name: &Name) -> anyhow::Result<Option<PlanBaked>> {
    let key = bake_key(name);
    let Some(entry) = home.store.get(&key)? else { return Ok(None) };
    Ok(Some(serde_json::from_slice(&entry.value).with_context(|| format!("{} {key}", home.store.describe()))?))
}

/// The image a bake node starts from for `group`: the provider's Debian for a group whose
/// image is `baked` or an lct image, else the group's own (a namespace cannot be baked).
pub fn base_image(plan: &Plan, group: &Name, provider: ProviderName) -> anyhow::Result<String> {
    let image = plan.groups.get(group).map(|g| g.image.as_str()).unwrap_or("debian-12");
    let base = if image == "baked" || LctImage::parse(image).is_some() { "debian-12" } else { image };
    if base == "lct/netns" {
        bail!("groups.{group}.image: lct/netns is a namespace, not a machine: there is no disk to bake");
    }
    Ok(lct_api::provider_image(provider, base))
}

/// lct's node-side programs beside the running one, by name and SHA-256 (what a bake
/// installs, so part of its recipe).
pub fn programs(tools: &Tools) -> anyhow::Result<Vec<(String, String)>> {
    let programs = lct_inventory::install::Program::beside(&tools.bin_dir)
        .with_context(|| format!("lct's node-side programs in {}", tools.bin_dir.display()))?;
    Ok(programs.into_iter().map(|p| (p.name, p.sha256)).collect())
}

/// The lct image each group's nodes are made from (groups made from a provider's image are
/// left out): `baked` is cluster `name`'s bake, which must be of this very plan, build and
/// base image.
pub fn resolve(
    home: &Home,
    tools: &Tools,
    name: &Name,
    loaded: &Loaded,
    provider: ProviderName,
) -> anyhow::Result<BTreeMap<Name, String>> {
    let mut images = BTreeMap::new();
    for (g, group) in &loaded.plan.groups {
        let field = format!("{}: groups.{g}.image", loaded.source);
        let image = match group.image.as_str() {
            "baked" => {
                let Some(baked) = load_bake(home, name)? else {
                    bail!(
                        "{field}: baked, but cluster {name} has no bake: `lct-plan bake {name} {}` first",
                        loaded.source
                    );
                };
                let recipe = crate::recipe::recipe(loaded, &base_image(&loaded.plan, g, provider)?, &programs(tools)?);
                if baked.recipe != recipe {
                    bail!(
                        "{field}: baked, but the bake of {name} ({}) is of another plan, base image or lct build: \
                         `lct-plan bake {name} {}` again",
                        baked.image,
                        loaded.source
                    );
                }
                baked.image
            }
            other if LctImage::parse(other).is_some() => other.to_string(),
            _ => continue,
        };
        images.insert(g.clone(), image);
    }
    Ok(images)
}

/// Every group's lct image made ready by the provider, before any node is made; an error
/// names the group's field and the image.
pub async fn prepare(api: &AnyProvider, images: &BTreeMap<Name, String>) -> anyhow::Result<()> {
    let mut done: Vec<&str> = Vec::new();
    for (g, image) in images {
        if done.contains(&image.as_str()) {
            continue;
        }
        api.prepare_image(image, None).await.with_context(|| format!("groups.{g}.image: {image}"))?;
        done.push(image);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAN: &str = "description: d\ngroups:\n  a:\n    count: 1\n    image: baked\n  \
        b:\n    count: 1\n    image: /srv/repo::web-1\n  c:\n    count: 1\n";

    fn loaded() -> Loaded {
        Loaded {
            plan: crate::parse(PLAN, "p.yaml").unwrap(),
            text: PLAN.into(),
            source: "p.yaml".into(),
            files: Default::default(),
        }
    }

    fn fake_tools(dir: &std::path::Path) -> Tools {
        for name in lct_inventory::install::NODE_PROGRAMS {
            std::fs::write(dir.join(name), name.as_bytes()).unwrap();
        }
        Tools { bin_dir: dir.to_path_buf() }
    }

    #[test]
    fn baked_needs_a_bake_of_this_very_plan() {
        let state = tempfile::tempdir().unwrap();
        let tools = fake_tools(state.path());
        let home = &Home::local(state.path());
        let zk: Name = "zk".parse().unwrap();
        let e = resolve(home, &tools, &zk, &loaded(), ProviderName::Local).unwrap_err().to_string();
        assert!(e.contains("p.yaml: groups.a.image: baked, but cluster zk has no bake"), "{e}");

        let recipe = crate::recipe::recipe(&loaded(), "debian-12", &programs(&tools).unwrap());
        let mut baked = PlanBaked {
            name: zk.clone(),
            plan: "p.yaml".into(),
            entry: "p-0123".into(),
            repo: "/r".into(),
            image: "/r::p-0123".into(),
            hash: "h".into(),
            recipe,
            base_image: "debian-12".into(),
            created: 1,
            disk_size: 1,
            arch: "x86_64".into(),
            reused: false,
            new_bytes: 0,
            took_ms: 0,
        };
        save_bake(home, &baked).unwrap();
        let images = resolve(home, &tools, &zk, &loaded(), ProviderName::Local).unwrap();
        assert_eq!(images.get(&"a".parse::<Name>().unwrap()).map(String::as_str), Some("/r::p-0123"));
        assert_eq!(images.get(&"b".parse::<Name>().unwrap()).map(String::as_str), Some("/srv/repo::web-1"));
        assert!(!images.keys().any(|g| g.as_str() == "c"), "a provider's image is left to the provider");

        // Another build of lct's node-side programs: the bake is stale.
        baked.recipe = "other".into();
        save_bake(home, &baked).unwrap();
        let e = resolve(home, &tools, &zk, &loaded(), ProviderName::Local).unwrap_err().to_string();
        assert!(e.contains("groups.a.image: baked, but the bake of zk (/r::p-0123) is of another plan"), "{e}");
    }

    #[test]
    fn a_namespace_has_no_disk_to_bake() {
        let plan = crate::parse("description: d\ngroups:\n  a:\n    count: 1\n    image: lct/netns\n", "p").unwrap();
        let e = base_image(&plan, &"a".parse().unwrap(), ProviderName::Local).unwrap_err().to_string();
        assert!(e.contains("groups.a.image: lct/netns is a namespace"), "{e}");
        assert_eq!(base_image(&loaded().plan, &"a".parse().unwrap(), ProviderName::Linode).unwrap(), "linode/debian12");
    }
}
