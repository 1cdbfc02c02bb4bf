//! A restore from a repository on node A onto a volume attached to node B, streamed from A
//! to B over the private network, not through the controller: B makes a one-time key pair
//! (its private key never leaves B), A authorizes it for one command only
//! (`restrict,command="lct-image send PATH::NAME",from="B's address"`), B pins A's host key
//! from lct's record and runs `ssh A | lct-image restore - DEVICE` (every extent checked, as
//! every restore is); the key is removed from A and B afterwards, whatever happened.

use lct_core::record::{Access, Node};

use crate::error::ImageError;
use crate::node_pipe::{Piped, on_node};
use crate::node_repo::{NodeRepo, ensure_program};
use crate::restore::RestoreOptions;

fn refused(message: String) -> ImageError {
    ImageError::Refused(message)
}

/// On B: a one-time key pair in a private directory; prints the public key, then the directory.
const MAKE_KEY: &str = "set -e; umask 077; d=$(mktemp -d /run/lct-relay.XXXXXXXX); \
    ssh-keygen -q -t ed25519 -N '' -C lct-relay -f \"$d/key\"; cat \"$d/key.pub\"; echo \"$d\"";

/// On A: authorizes the line `$0`.
const AUTHORIZE: &str = "set -e; umask 077; mkdir -p ~/.ssh; printf '%s\\n' \"$0\" >> ~/.ssh/authorized_keys";

/// On A: removes the line `$0` (the file rewritten in place: its owner and mode kept).
const DEAUTHORIZE: &str = "f=~/.ssh/authorized_keys; [ -f \"$f\" ] || exit 0; \
    grep -v -x -F -- \"$0\" \"$f\" > \"$f.lct-relay\" || true; cat \"$f.lct-relay\" > \"$f\"; rm -f \"$f.lct-relay\"";

/// On B: A's pinned host key into the key's directory, then `ssh A | lct-image restore`.
/// `$0` directory, `$1` A's address, `$2` port, `$3` user, `$4` known_hosts line, `$5` device,
/// then restore's own options.
const PULL: &str = "d=$0; a=$1; p=$2; u=$3; printf '%s\\n' \"$4\" > \"$d/known_hosts\"; dev=$5; shift 5; \
    ssh -i \"$d/key\" -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes \
    -o UserKnownHostsFile=\"$d/known_hosts\" -o GlobalKnownHostsFile=/dev/null -o ConnectTimeout=15 \
    -o ServerAliveInterval=5 -o ServerAliveCountMax=3 -o LogLevel=ERROR -p \"$p\" -l \"$u\" -- \"$a\" send \
    | lct-image -o jsonl restore - \"$dev\" \"$@\"";

/// The first private IPv4 address of a node, or an error naming it.
fn private_address(node: &Node) -> Result<String, ImageError> {
    node.private_ipv4
        .first()
        .map(|a| a.to_string())
        .ok_or_else(|| refused(format!("node {}: no private address (a relayed restore needs one)", node.name)))
}

/// A's host key as lct pinned it (`TYPE BASE64`), from lct's known_hosts.
fn pinned_key(node: &Node, address: &str) -> Result<String, ImageError> {
    let files = lct_core::ssh::SshFiles::from_env()
        .map_err(|error| crate::error::ImageError::Io { path: "lct's SSH files".into(), error })?;
    let path = files.known_hosts();
    let text = std::fs::read_to_string(&path).map_err(crate::error::io_at(&path))?;
    let names = [node.name.to_string(), address.to_string()];
    let key = text.lines().find_map(|l| {
        let mut words = l.split_whitespace();
        let hosts = words.next()?;
        hosts.split(',').any(|h| names.iter().any(|n| n == h)).then(|| words.take(2).collect::<Vec<_>>().join(" "))
    });
    key.filter(|k| is_public_key(k))
        .ok_or_else(|| refused(format!("node {}: no pinned host key in {}", node.name, path.display())))
}

/// `TYPE BASE64` of an OpenSSH public key, nothing else.
fn is_public_key(key: &str) -> bool {
    let mut words = key.split(' ');
    let kind = words.next().unwrap_or_default();
    let body = words.next().unwrap_or_default();
    words.next().is_none()
        && (kind.starts_with("ssh-") || kind.starts_with("ecdsa-"))
        && kind.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !body.is_empty()
        && body.len() < 2048
        && body.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
}

fn run(node: &Node, argv: &[&str], what: &str) -> Result<String, ImageError> {
    let answer = Piped::spawn(on_node(node, argv)?, format!("node {}: {what}", node.name), false)?.answer(1 << 16)?;
    Ok(String::from_utf8_lossy(&answer).to_string())
}

/// What is undone at the end, whatever happened: the key's line on A, its directory on B.
struct Undo<'a> {
    a: &'a Node,
    line: Option<String>,
    b: &'a Node,
    dir: String,
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if let Some(line) = &self.line
            && let Err(e) = run(self.a, &["sh", "-c", DEAUTHORIZE, line], "removing the relay key")
        {
            tracing::error!("{e}");
        }
        if let Err(e) = run(self.b, &["rm", "-rf", "--", &self.dir], "removing the relay key") {
            tracing::error!("{e}");
        }
    }
}

/// Restores image `name` of `repo` (on node A) onto `device` on node `b`, A to B directly.
pub fn restore(
    repo: &NodeRepo,
    name: &str,
    b: &Node,
    device: &str,
    options: &RestoreOptions,
) -> Result<crate::Report<crate::report::Restored>, ImageError> {
    crate::repo::check_name(name)?;
    let a = &repo.node;
    let Some(Access::Ssh { port, user, .. }) = &a.access else {
        return Err(refused(format!("node {}: not reached by SSH", a.name)));
    };
    ensure_program(b)?;
    let (a_address, b_address) = (private_address(a)?, private_address(b)?);
    let host_key = pinned_key(a, &a_address)?;
    let made = run(b, &["sh", "-c", MAKE_KEY], "making a relay key")?;
    let mut lines = made.lines();
    let (public, dir) = (lines.next().unwrap_or_default(), lines.next().unwrap_or_default().to_string());
    let dir_ok = dir
        .strip_prefix("/run/lct-relay.")
        .is_some_and(|s| s.len() == 8 && s.bytes().all(|c| c.is_ascii_alphanumeric()));
    let public = public.strip_suffix(" lct-relay").unwrap_or_default();
    if !dir_ok || !is_public_key(public) {
        return Err(refused(format!("node {}: an unexpected answer making a relay key", b.name)));
    }
    let mut undo = Undo { a, line: None, b, dir: dir.clone() };
    // PATH and NAME are plain words (checked): nothing in the forced command is shell.
    let line = format!(
        "restrict,command=\"/usr/local/bin/lct-image send {}::{name}\",from=\"{b_address}\" {public} lct-relay",
        repo.name.path
    );
    run(a, &["sh", "-c", AUTHORIZE, &line], "authorizing the relay key")?;
    undo.line = Some(line);
    let known = format!("{a_address} {host_key}");
    let port = port.to_string();
    let mut argv = vec!["sh", "-c", PULL, &dir, &a_address, &port, user, &known, device];
    if options.skip_matching {
        argv.push("--skip-matching");
    }
    if options.force {
        argv.push("--force");
    }
    let what = format!("node {}: lct-image restore {}::{name} (from node {})", b.name, repo.name, a.name);
    let answer = Piped::spawn(on_node(b, &argv)?, what.clone(), false)?.answer(1 << 20)?;
    let (restored, _) = lct_core::stream::read_kind::<crate::Report<crate::report::Restored>>(&answer[..])
        .map_err(|e| refused(format!("{what}: {e}")))?;
    restored.into_iter().next().ok_or_else(|| refused(format!("{what}: said nothing")))
}

#[cfg(test)]
mod tests {
    use super::is_public_key;

    #[test]
    fn only_plain_public_keys_go_into_authorized_keys_and_known_hosts() {
        assert!(is_public_key("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB+/="));
        for bad in [
            "ssh-ed25519 AAAA\" ,command=\"x",
            "ssh-ed25519 AAAA x",
            "ssh-ed25519",
            "command=\"x\" ssh-ed25519 AAAA",
            "ssh-ed25519 AAAA\nssh-rsa BBBB",
        ] {
            assert!(!is_public_key(bad), "{bad:?}");
        }
    }
}
