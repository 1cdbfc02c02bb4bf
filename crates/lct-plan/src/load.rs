//! Finding, reading and checking plans: references (`package:NAME`, a path), YAML with
//! errors that name file, line, column and field, and the checks a plan must pass before
//! anything is made from it (templates compile, references resolve, parameters fit).

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::PlanError;
use crate::offered::check_dependency;
use crate::packages::PACKAGES;
use crate::plan::Plan;
use crate::suggest::{self, did_you_mean};
use crate::validate::{hooks_in, validate};

/// A plan read and checked, with the files its hooks run (read now: later operations need
/// neither the source directory nor the network).
#[derive(Debug, Clone)]
pub struct Loaded {
    pub plan: Plan,
    /// Its text, as kept with the cluster.
    pub text: String,
    /// The name errors and `status` give it (`package:zookeeper`, a path, a URL).
    pub source: String,
    /// Hook scripts and playbooks by their path in the plan.
    pub files: BTreeMap<String, Vec<u8>>,
}

/// Where a plan comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanRef {
    /// Built in: `package:zookeeper`.
    Package(String),
    /// A file.
    Path(String),
    /// A URL, with the SHA-256 it must have (`#sha256=HEX`), if pinned.
    Url { url: String, pin: Option<String> },
}

/// The most a plan by URL may be.
const MAX_PLAN_BYTES: u64 = 1 << 20;

impl PlanRef {
    /// A reference; plans by URL over HTTPS only unless `allow_http`.
    pub fn parse_with(s: &str, allow_http: bool) -> Result<PlanRef, PlanError> {
        if s.starts_with("http://") || s.starts_with("https://") {
            if s.starts_with("http://") && !allow_http {
                return Err(PlanError::Reference(format!(
                    "{s}: plans by URL over HTTPS only (--allow-http to take plain HTTP)"
                )));
            }
            let (url, pin) = match s.split_once('#') {
                Some((url, fragment)) => {
                    let hex = fragment.strip_prefix("sha256=").ok_or_else(|| {
                        PlanError::Reference(format!("{s}: the only fragment a plan URL takes is #sha256=HEX"))
                    })?;
                    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return Err(PlanError::Reference(format!("{s}: #sha256= takes 64 hexadecimal digits")));
                    }
                    (url.to_string(), Some(hex.to_ascii_lowercase()))
                }
                None => (s.to_string(), None),
            };
            return Ok(PlanRef::Url { url, pin });
        }
        PlanRef::parse(s)
    }

    /// Whether the plan came from elsewhere without a pin: its shell hooks then need
    /// explicit trust.
    pub fn is_unpinned_remote(&self) -> bool {
        matches!(self, PlanRef::Url { pin: None, .. })
    }

    pub fn parse(s: &str) -> Result<PlanRef, PlanError> {
        if let Some(name) = s.strip_prefix("package:") {
            if !PACKAGES.iter().any(|p| p.name == name) {
                let names: Vec<&str> = PACKAGES.iter().map(|p| p.name).collect();
                return Err(PlanError::Reference(format!(
                    "no packaged plan {name:?}; there are: {}{}",
                    names.join(", "),
                    did_you_mean(name, names.iter().copied())
                )));
            }
            return Ok(PlanRef::Package(name.to_string()));
        }
        if s.starts_with("http://") || s.starts_with("https://") {
            return PlanRef::parse_with(s, false);
        }
        Ok(PlanRef::Path(s.to_string()))
    }

    /// Reads, parses and checks the plan and reads the files its hooks run.
    pub fn load(&self) -> Result<Loaded, PlanError> {
        let (text, source) = self.read()?;
        let plan = parse(&text, &source)?;
        // Errors found after parsing name the place too.
        let files = self.checked(&plan, &source).map_err(|e| e.located(&text))?;
        Ok(Loaded { plan, text, source, files })
    }

    /// The checks of a parsed plan, then the files its hooks run.
    fn checked(&self, plan: &Plan, source: &str) -> Result<BTreeMap<String, Vec<u8>>, PlanError> {
        validate(plan, source)?;
        check_declared(plan, self, source)?;
        let mut files = BTreeMap::new();
        for (event, i, hook) in hooks_in(plan) {
            let Some(file) = hook.script.as_ref().or(hook.playbook.as_ref()) else { continue };
            let bad = |message: String| PlanError::Invalid {
                file: source.to_string(),
                field: format!("hooks.{event}[{i}]"),
                message,
            };
            let body = match self {
                PlanRef::Path(p) => {
                    let path = Path::new(p).parent().unwrap_or(Path::new(".")).join(file);
                    std::fs::read(&path).map_err(|e| bad(format!("{}: {}", path.display(), no_such(&e))))?
                }
                PlanRef::Package(name) => PACKAGES
                    .iter()
                    .find(|p| p.name == name)
                    .and_then(|p| p.files.iter().find(|(f, _)| f == file))
                    .map(|(_, body)| body.as_bytes().to_vec())
                    .ok_or_else(|| bad(format!("{file}: not packaged with the plan")))?,
                PlanRef::Url { .. } => {
                    return Err(bad(format!(
                        "{file}: a plan by URL carries its scripts inline (`run:`), so that its pin covers them"
                    )));
                }
            };
            files.insert(file.clone(), body);
        }
        Ok(files)
    }

    /// The plan's text and the name errors give it.
    pub fn read(&self) -> Result<(String, String), PlanError> {
        match self {
            PlanRef::Package(name) => {
                let text = PACKAGES.iter().find(|p| p.name == name).map(|p| p.plan).expect("checked in parse");
                Ok((text.to_string(), format!("package:{name}")))
            }
            PlanRef::Path(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|error| PlanError::Io { path: path.clone(), error })?;
                Ok((text, path.clone()))
            }
            PlanRef::Url { url, pin } => {
                let fail = |why: String| PlanError::Reference(format!("{url}: {why}"));
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .timeout_global(Some(std::time::Duration::from_secs(30)))
                    .build()
                    .into();
                let mut response = agent.get(url).call().map_err(|e| fail(e.to_string()))?;
                let bytes = response
                    .body_mut()
                    .with_config()
                    .limit(MAX_PLAN_BYTES)
                    .read_to_vec()
                    .map_err(|e| fail(format!("reading it: {e}")))?;
                let got = lct_inventory::install::sha256_hex(&bytes);
                if let Some(want) = pin
                    && *want != got
                {
                    return Err(fail(format!("its SHA-256 is {got}, not the pinned {want}: nothing was used")));
                }
                let text = String::from_utf8(bytes).map_err(|_| fail("not UTF-8 text".into()))?;
                Ok((text, url.clone()))
            }
        }
    }
}

/// Reads a plan from YAML (JSON is YAML too): unknown fields and bad values name the line,
/// column and field.
pub fn parse(text: &str, source: &str) -> Result<Plan, PlanError> {
    check_nesting(text, source)?;
    let de = serde_norway::Deserializer::from_str(text);
    serde_path_to_error::deserialize::<_, Plan>(de).map_err(|e| {
        let mut path = e.path().to_string();
        let inner = e.into_inner();
        let (line, column) = inner.location().map_or((0, 0), |l| (l.line(), l.column()));
        let mut message = inner.to_string();
        // serde_norway appends " at line L column C", which the error already says.
        if let Some(at) = message.find(" at line ") {
            message.truncate(at);
        }
        // ...and begins with the path of the value it was in, which the field says. Under a
        // map keyed by an enum (`hooks`) the field's path has `?` for the key, where
        // serde_norway's names it: then its path is the one given (one path per message).
        if let Some((prefix, rest)) = message.split_once(": ")
            && !prefix.contains(' ')
            && (path.starts_with(prefix) || path.contains('?'))
        {
            if path.contains('?') {
                path = prefix.to_string();
            }
            message = rest.to_string();
        }
        message.push_str(&suggest::for_serde(&message));
        let field = if path == "." { String::new() } else { format!("field {path}: ") };
        PlanError::Parse { file: source.to_string(), line, column, field, message }
    })
}

/// The deepest the brackets of a plan's text may nest (`[` and `{`, counted wherever they
/// are: quoted or not). YAML's parser (libyaml, under serde_norway) takes time quadratic in
/// the depth of flow collections: 100,000 brackets, a 200 KB plan, kept it busy for minutes
/// (found by lct-fuzz). serde_norway refuses structures over 128 levels anyway, so this
/// refuses no plan that could load.
pub const MAX_NESTING: usize = 256;

fn check_nesting(text: &str, source: &str) -> Result<(), PlanError> {
    let (mut depth, mut line, mut column) = (0usize, 1, 0);
    for c in text.chars() {
        column += 1;
        match c {
            '\n' => (line, column) = (line + 1, 0),
            '[' | '{' => depth += 1,
            ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        if depth > MAX_NESTING {
            return Err(PlanError::Parse {
                file: source.to_string(),
                line,
                column,
                field: String::new(),
                message: format!("brackets nested more than {MAX_NESTING} deep"),
            });
        }
    }
    Ok(())
}

/// `validate`'s part: each dependency that names its plan (`depends_on.ROLE.plan`) is
/// checked against that plan. `base` is where the dependent plan came from: a path beside
/// it is read relative to it.
pub fn check_declared(plan: &Plan, base: &PlanRef, source: &str) -> Result<(), PlanError> {
    for (role, dep) in &plan.depends_on {
        let Some(reference) = &dep.plan else { continue };
        let field = format!("depends_on.{role}.plan");
        let bad = |message: String| PlanError::Invalid { file: source.to_string(), field: field.clone(), message };
        let other_ref = resolve(reference, base).map_err(bad)?;
        let (text, other) = other_ref.read().map_err(|e| bad(e.to_string()))?;
        let other_plan = parse(&text, &other).map_err(|e| bad(e.to_string()))?;
        validate(&other_plan, &other).map_err(|e| bad(e.to_string()))?;
        check_dependency(role, dep, &other, &other_plan).map_err(|refused| PlanError::Invalid {
            file: source.to_string(),
            field: refused.field,
            message: refused.message,
        })?;
    }
    Ok(())
}

/// A dependency's plan reference, a path read relative to the dependent plan's file; a
/// plan that is not a file (packaged, by URL) names its dependencies' plans by package or
/// URL only.
fn resolve(reference: &str, base: &PlanRef) -> Result<PlanRef, String> {
    match (PlanRef::parse(reference).map_err(|e| e.to_string())?, base) {
        (PlanRef::Path(path), PlanRef::Path(own)) => {
            let dir = Path::new(own).parent().unwrap_or(Path::new("."));
            Ok(PlanRef::Path(dir.join(path).to_string_lossy().into_owned()))
        }
        (PlanRef::Path(path), _) => {
            Err(format!("{path}: a plan that is not a file names its dependency's plan as package:NAME or a URL"))
        }
        (other, _) => Ok(other),
    }
}

fn no_such(e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::NotFound { "no such file".into() } else { e.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brackets nested 100,000 deep (found by lct-fuzz: minutes in the YAML parser) are
    /// refused at once, with the place; a plan's usual nesting is not.
    #[test]
    fn deeply_nested_brackets_are_refused_at_once() {
        let text = format!("description: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
        let start = std::time::Instant::now();
        let error = super::parse(&text, "deep.yaml").unwrap_err().to_string();
        assert!(start.elapsed() < std::time::Duration::from_secs(1), "{:?}", start.elapsed());
        assert!(error.contains("deep.yaml: line 1, column 270: brackets nested more than 256 deep"), "{error}");
        let text = format!("description: {}{}\ngroups: {{node: {{count: 1}}}}\n", "[".repeat(20), "]".repeat(20));
        let error = super::parse(&text, "ok.yaml").unwrap_err().to_string();
        assert!(!error.contains("nested"), "{error}");
    }

    #[test]
    fn dependency_plans_beside_a_file_or_by_package() {
        let file = PlanRef::Path("/plans/pg.yaml".into());
        assert_eq!(resolve("zk.yaml", &file).unwrap(), PlanRef::Path("/plans/zk.yaml".into()));
        assert_eq!(resolve("package:zookeeper", &file).unwrap(), PlanRef::Package("zookeeper".into()));
        let packaged = PlanRef::Package("postgres-ha".into());
        assert!(resolve("zk.yaml", &packaged).unwrap_err().contains("as package:NAME or a URL"));
    }
}
