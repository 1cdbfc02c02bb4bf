//! What goes into a baked image, hashed: its recipe (the plan's text and files, its
//! packages, the base image, lct's node-side programs) and the values given to the bake;
//! the repository entry's name (`PLAN-<hash12>`).
//!
//! The recipe leaves out the parameters on purpose: `create` and `scale` of a cluster set
//! their own (`servers=5`), and the image must still be the one baked from this plan. The
//! bake's hash adds the non-secret values given to the bake with `--set` (what its `baked`
//! hooks may read); secret values never go into a hash that is printed and stored (a hash
//! of a password is a way to test guesses of it offline).

use crate::load::Loaded;
use crate::plan::Plan;

/// What the recipe and hash are of, in a fixed, unambiguous order (every field
/// length-prefixed, so two different inputs never hash alike by shifting a boundary).
struct Hasher(blake3::Hasher);

impl Hasher {
    fn new(domain: &str) -> Hasher {
        let mut h = Hasher(blake3::Hasher::new());
        h.field(domain.as_bytes());
        h
    }

    fn field(&mut self, bytes: &[u8]) {
        self.0.update(&(bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
    }

    fn hex(&self) -> String {
        self.0.finalize().to_hex().to_string()
    }
}

/// The recipe's hash: plan text, its files, its packages, the base image and the
/// node-side programs (`(name, sha256)`).
pub fn recipe(loaded: &Loaded, base_image: &str, programs: &[(String, String)]) -> String {
    let mut h = Hasher::new("lct-plan bake recipe 1");
    h.field(loaded.text.as_bytes());
    for (path, body) in &loaded.files {
        h.field(path.as_bytes());
        h.field(body);
    }
    let mut packages = loaded.plan.packages.clone();
    packages.sort();
    for p in &packages {
        h.field(p.as_bytes());
    }
    h.field(base_image.as_bytes());
    let mut programs = programs.to_vec();
    programs.sort();
    for (name, sha256) in &programs {
        h.field(name.as_bytes());
        h.field(sha256.as_bytes());
    }
    h.hex()
}

/// The bake's hash: the recipe and the non-secret values given with `--set`.
pub fn bake_hash(recipe: &str, plan: &Plan, sets: &[(String, String)]) -> String {
    let mut h = Hasher::new("lct-plan bake 1");
    h.field(recipe.as_bytes());
    let mut given: Vec<&(String, String)> =
        sets.iter().filter(|(k, _)| !plan.parameters.get(k).is_some_and(|p| p.secret || p.generate)).collect();
    given.sort();
    given.dedup_by(|a, b| a.0 == b.0);
    for (k, v) in given {
        h.field(k.as_bytes());
        h.field(v.as_bytes());
    }
    h.hex()
}

/// The plan's short name in entry names: the package's name, else the file's stem (its
/// directory's name for a `plan.yaml`), in the characters image names allow.
pub fn plan_name(source: &str) -> String {
    let source = source.split('#').next().unwrap_or_default();
    let raw = match source.strip_prefix("package:") {
        Some(name) => name.to_string(),
        None => {
            let path = std::path::Path::new(source);
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
            if stem == "plan" {
                path.parent().and_then(|p| p.file_name()).and_then(|s| s.to_str()).unwrap_or("plan").to_string()
            } else {
                stem.to_string()
            }
        }
    };
    let clean: String =
        raw.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' }).take(40).collect();
    let clean = clean.trim_matches('-').to_string();
    if clean.is_empty() { "plan".into() } else { clean }
}

/// The repository entry a bake makes: `PLAN-<first 12 hex digits of the hash>`.
pub fn entry_name(plan_name: &str, hash: &str) -> String {
    format!("{plan_name}-{}", &hash[..12])
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAN: &str = "description: d\nparameters:\n  n: {type: integer, default: 1, description: n}\n  \
        pw: {type: string, secret: true, default: x, description: p}\ngroups:\n  a:\n    count: 1\n  \
        b:\n    count: 1\n    image: baked\npackages: [zookeeperd]\n";

    fn loaded(text: &str) -> Loaded {
        Loaded {
            plan: crate::parse(text, "p.yaml").unwrap(),
            text: text.into(),
            source: "p.yaml".into(),
            files: Default::default(),
        }
    }

    fn progs() -> Vec<(String, String)> {
        vec![("lct-fw".into(), "aa".into()), ("lct-hosts".into(), "bb".into())]
    }

    #[test]
    fn the_recipe_follows_everything_that_goes_into_the_image() {
        let base = recipe(&loaded(PLAN), "debian-12", &progs());
        assert_eq!(base, recipe(&loaded(PLAN), "debian-12", &progs()), "stable");
        let reordered: Vec<_> = progs().into_iter().rev().collect();
        assert_eq!(base, recipe(&loaded(PLAN), "debian-12", &reordered), "order of programs does not count");
        let more = PLAN.replace("[zookeeperd]", "[zookeeperd, jq]");
        assert_ne!(base, recipe(&loaded(&more), "debian-12", &progs()), "a package more");
        assert_ne!(base, recipe(&loaded(PLAN), "debian-13", &progs()), "another base image");
        let mut other = progs();
        other[0].1 = "ab".into();
        assert_ne!(base, recipe(&loaded(PLAN), "debian-12", &other), "another lct-fw");
        let mut with_file = loaded(PLAN);
        with_file.files.insert("x.sh".into(), b"echo 1".to_vec());
        let one = recipe(&with_file, "debian-12", &progs());
        with_file.files.insert("x.sh".into(), b"echo 2".to_vec());
        assert_ne!(one, recipe(&with_file, "debian-12", &progs()), "a file's body");
        assert_ne!(base, one);
    }

    #[test]
    fn the_hash_takes_given_values_but_never_secrets() {
        let l = loaded(PLAN);
        let r = recipe(&l, "debian-12", &progs());
        let none = bake_hash(&r, &l.plan, &[]);
        assert_ne!(none, bake_hash(&r, &l.plan, &[("n".into(), "2".into())]));
        assert_eq!(none, bake_hash(&r, &l.plan, &[("pw".into(), "hunter2".into())]), "a secret leaves no trace");
        assert_ne!(none, r);
    }

    #[test]
    fn entry_names_are_image_names() {
        assert_eq!(plan_name("package:zookeeper"), "zookeeper");
        assert_eq!(plan_name("/srv/plans/zk/plan.yaml"), "zk");
        assert_eq!(plan_name("./my plan.yaml"), "my-plan");
        assert_eq!(plan_name("https://x.example/a/web.yaml#sha256=00"), "web");
        assert_eq!(plan_name("/../.."), "plan");
        assert_eq!(entry_name("zookeeper", &"0123456789abcdef".repeat(4)), "zookeeper-0123456789ab");
    }

    #[test]
    fn the_bake_group_is_the_first_baked_one() {
        assert_eq!(loaded(PLAN).plan.bake_group().as_str(), "b");
        let plain = PLAN.replace("    image: baked\n", "");
        assert_eq!(loaded(&plain).plan.bake_group().as_str(), "a");
    }
}
