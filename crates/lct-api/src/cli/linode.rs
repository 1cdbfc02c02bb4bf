//! `lct-api linode RESOURCE VERB ...`: the generic path to every resource of the Linode
//! API, one request per body (`--data`, or a JSON line each on stdin).

use std::io::{self, IsTerminal};

use anyhow::{Context, bail};
use lct_core::cli::UsageError;
use serde_json::Value;

use super::LinodeArgs;
use crate::linode::resources::{self, Call, RESOURCES};

/// What a generic call gave: the items, and how many requests failed (each named on
/// stderr).
pub struct Outcome {
    pub kind: &'static str,
    pub items: Vec<Value>,
    pub failed: usize,
}

/// Runs the requests `args` asks for.
pub async fn run(args: LinodeArgs) -> anyhow::Result<Outcome> {
    let resource = resources::find(&args.resource).ok_or_else(|| {
        UsageError(format!(
            "no resource {:?}; there are: {}",
            args.resource,
            RESOURCES.iter().map(|r| r.name).collect::<Vec<_>>().join(", ")
        ))
    })?;
    resources::check(resource, &args.verb, &args.ids).map_err(UsageError)?;
    let parse = |what: &str, text: &str| -> anyhow::Result<Value> {
        serde_json::from_str(text).map_err(|e| UsageError(format!("--{what}: not JSON: {e}")).into())
    };
    let mut filter = args.filter.as_deref().map(|f| parse("filter", f)).transpose()?;
    if let Some(since) = &args.since {
        let mut f = filter.take().unwrap_or(serde_json::json!({}));
        f["created"] = serde_json::json!({ "+gte": since });
        filter = Some(f);
    }
    // Bodies: --data, or a JSON line each on stdin (kind and v dropped), or none.
    let takes_body = !matches!(args.verb.as_str(), "list" | "get" | "delete");
    let bodies: Vec<Option<Value>> = match (&args.data, takes_body && !io::stdin().is_terminal()) {
        (Some(d), _) => {
            // A secret in an argument is in every process list: say so (stdin and @FILE are not).
            if ["root_pass", "password", "secret", "token"].iter().any(|k| d.contains(k)) {
                tracing::warn!(
                    "--data holds what looks like a secret; other users can read arguments: use @FILE or stdin"
                );
            }
            // `@FILE` reads the body from a file, as curl does.
            let text = match d.strip_prefix('@') {
                Some(file) => std::fs::read_to_string(file).with_context(|| format!("--data {d}"))?,
                None => d.clone(),
            };
            vec![Some(parse("data", &text)?)]
        }
        (None, true) => {
            let mut out = Vec::new();
            for (n, line) in io::read_to_string(io::stdin())?.lines().enumerate().filter(|(_, l)| !l.trim().is_empty())
            {
                let mut v: Value = serde_json::from_str(line).map_err(|e| {
                    let what = e.to_string();
                    let what = what.split(" at line ").next().unwrap_or_default().to_string();
                    anyhow::anyhow!("stdin: line {}, column {}: {what}", n + 1, e.column())
                })?;
                if let Value::Object(m) = &mut v {
                    m.remove("kind");
                    m.remove("v");
                }
                out.push(Some(v));
            }
            if out.is_empty() { vec![None] } else { out }
        }
        (None, false) => vec![None],
    };
    let provider = crate::linode::LinodeProvider::from_env()?;
    let api = &provider.api;
    let mut items = Vec::new();
    let mut failed = 0;
    for body in bodies {
        let result = if resource.name == "images" && args.verb == "upload" {
            upload_image(api, body, args.file.as_deref(), args.wait).await
        } else {
            let call = Call {
                resource,
                verb: &args.verb,
                ids: args.ids.clone(),
                filter: filter.clone(),
                body,
                wait: args.wait,
            };
            resources::run(api, call).await.map_err(anyhow::Error::from)
        };
        match result {
            Ok(made) => items.extend(made),
            Err(e) => {
                eprintln!("lct-api: {} {}: {e:#}", resource.name, args.verb);
                failed += 1;
            }
        }
    }
    Ok(Outcome { kind: resource.kind, items, failed })
}

/// `images upload`: the image record, the PUT of the gzip'd file, and (with --wait) until it
/// is available.
async fn upload_image(
    api: &crate::linode::api::Linode,
    body: Option<serde_json::Value>,
    file: Option<&std::path::Path>,
    wait: bool,
) -> anyhow::Result<Vec<serde_json::Value>> {
    let body = body.ok_or_else(|| UsageError("images upload needs --data '{\"label\":...,\"region\":...}'".into()))?;
    let file = file.ok_or_else(|| UsageError("images upload needs --file IMAGE.gz".into()))?;
    let bytes = std::fs::read(file).with_context(|| file.display().to_string())?;
    if bytes.len() < 2 || bytes[..2] != [0x1f, 0x8b] {
        bail!("{}: not gzip'd (upload a raw disk image compressed with gzip)", file.display());
    }
    // Linode's limits: 5 GB compressed.
    if bytes.len() as u64 > 5_000_000_000 {
        bail!("{}: larger than the 5 GB an upload may be", file.display());
    }
    let label = body["label"].as_str().unwrap_or_default();
    let region = body["region"].as_str().unwrap_or_default();
    crate::linode::validate::label("label", label)?;
    crate::linode::validate::region("region", region)?;
    let started = api.upload_image(label, region, body["description"].as_str().unwrap_or("")).await?;
    api.put_upload(&started.upload_to, bytes).await?;
    let image = if wait { api.wait_image(&started.image.id).await? } else { api.image(&started.image.id).await? };
    Ok(vec![serde_json::to_value(image)?])
}
