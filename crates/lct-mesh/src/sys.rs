//! What the node's side shares (`node`, `forward`): where its files live, and running the
//! programs it drives (`ip`, `wg`, `nft`).

use std::io::Write as _;
use std::process::{Command, Stdio};

use crate::MeshError;

/// Where keys live on a node.
pub const KEY_DIR: &str = "/var/lib/lct/mesh";

/// Runs a program; its stdout on success, else an error with its stderr's last line.
pub(crate) fn run(program: &str, args: &[&str], input: Option<&[u8]>) -> Result<String, MeshError> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| MeshError::Node(format!("{program}: {e}")))?;
    if let Some(bytes) = input {
        let mut stdin = child.stdin.take().expect("piped");
        stdin.write_all(bytes).map_err(|e| MeshError::Node(format!("{program}: {e}")))?;
    }
    let out = child.wait_with_output().map_err(|e| MeshError::Node(format!("{program}: {e}")))?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr);
        // The last line that says something (nft ends with a line of carets under the error).
        let why = why
            .trim()
            .lines()
            .rev()
            .find(|l| l.chars().any(char::is_alphanumeric))
            .map_or_else(|| "failed".to_string(), |l| l.trim().chars().take(200).collect());
        // The arguments are ours (names, addresses): never a secret.
        return Err(MeshError::Node(format!("{program} {}: {why}", args.join(" "))));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
