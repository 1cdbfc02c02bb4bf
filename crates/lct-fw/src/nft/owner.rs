//! The hand-off to `lct-fw watch` when it owns the table: a table owned by the watcher's
//! netlink socket (see [`super::table::OWNED`]) refuses every other socket's change, so a sync,
//! a roll-back or a removal sends its request to the watcher over a unix socket beside the
//! memory (`net-INO.sock`, mode 0600, root's) and the watcher applies it on its own socket.
//! Where no watcher listens, they apply directly, as before.
//!
//! The protocol: one JSON request, the writer's end shut, one JSON reply. Requests are
//! bounded ([`MAX_REQUEST`]) and timed; only root (by the peer's credentials) is served.

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::Duration;

use nftnl::nftnl_sys::libc;
use serde::{Deserialize, Serialize};

use super::apply::sync_on;
use super::memory::memory_path;
use super::socket::Netlink;
use super::table::delete_table as delete_on;
use crate::report::Applied;
use crate::ruleset::Ruleset;

/// The largest request taken: a ruleset of about a million peers.
pub const MAX_REQUEST: u64 = 32 << 20;
/// How long a peer may take to send its request or read the reply: the watcher serves one at
/// a time (the table it owns needs no watching meanwhile).
const PATIENCE: Duration = Duration::from_secs(5);

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Request {
    Sync { ruleset: Ruleset, full: bool },
    Remove,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Reply {
    Synced(Applied),
    Removed(bool),
    Refused { error: String, errno: Option<i32> },
}

/// Where the watcher of this network namespace listens.
pub fn socket_path() -> io::Result<PathBuf> {
    Ok(memory_path()?.with_extension("sock"))
}

/// Brings this host's `inet lct` table to `rs` (see [`sync_on`]): through the watcher when one
/// owns the table, on a socket of our own otherwise.
pub fn sync(rs: &Ruleset, full: bool) -> io::Result<Applied> {
    match ask(&Request::Sync { ruleset: rs.clone(), full })? {
        Some(Reply::Synced(applied)) => Ok(applied),
        Some(reply) => Err(refused(reply)),
        None => sync_on(&Netlink::open()?, rs, full, false),
    }
}

/// Deletes the `inet lct` table, if there is one (through the watcher when one owns it).
pub fn delete_table() -> io::Result<bool> {
    match ask(&Request::Remove)? {
        Some(Reply::Removed(removed)) => Ok(removed),
        Some(reply) => Err(refused(reply)),
        None => delete_on(&Netlink::open()?),
    }
}

fn refused(reply: Reply) -> io::Error {
    match reply {
        Reply::Refused { error, errno: Some(errno) } => {
            let kind = io::Error::from_raw_os_error(errno).kind();
            io::Error::new(kind, format!("lct-fw watch: {error}"))
        }
        Reply::Refused { error, errno: None } => io::Error::other(format!("lct-fw watch: {error}")),
        _ => io::Error::other("lct-fw watch answered another request"),
    }
}

/// The watcher's reply, or `None` when no watcher listens here.
fn ask(request: &Request) -> io::Result<Option<Reply>> {
    let path = socket_path()?;
    let mut stream = match UnixStream::connect(&path) {
        Ok(stream) => stream,
        Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused) => return Ok(None),
        Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
    };
    stream.write_all(&serde_json::to_vec(request).map_err(io::Error::other)?)?;
    stream.shutdown(std::net::Shutdown::Write)?;
    let mut answer = Vec::new();
    stream.take(MAX_REQUEST).read_to_end(&mut answer)?;
    let reply = serde_json::from_slice(&answer)
        .map_err(|e| io::Error::other(format!("lct-fw watch gave no answer ({e}); see its log")))?;
    Ok(Some(reply))
}

/// The watcher's listening socket; its file goes when it is dropped.
pub struct Server {
    listener: UnixListener,
    path: PathBuf,
}

impl Server {
    /// Listens at [`socket_path`], replacing a file a previous watcher left; refused while
    /// another watcher listens there.
    pub fn bind() -> io::Result<Server> {
        let path = socket_path()?;
        std::fs::create_dir_all(path.parent().expect("has parent"))?;
        if UnixStream::connect(&path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("another lct-fw watch listens on {}", path.display()),
            ));
        }
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        // Created 0600: no moment at which another user could connect.
        // SAFETY: umask only changes this process's file creation mask; restored at once.
        let old = unsafe { libc::umask(0o177) };
        let bound = UnixListener::bind(&path);
        unsafe { libc::umask(old) };
        let listener = bound?;
        listener.set_nonblocking(true)?;
        Ok(Server { listener, path })
    }

    pub fn fd(&self) -> libc::c_int {
        self.listener.as_raw_fd()
    }

    /// Serves every request waiting, one after the other, on `nl` (the owning socket).
    pub fn serve(&self, nl: &Netlink) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if let Err(e) = serve_one(stream, nl) {
                        tracing::warn!("a request on {} failed: {e}", self.path.display());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::warn!("accepting on {}: {e}", self.path.display());
                    return;
                }
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn serve_one(mut stream: UnixStream, nl: &Netlink) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(PATIENCE))?;
    stream.set_write_timeout(Some(PATIENCE))?;
    let reply = match peer_uid(&stream)? {
        0 => {
            let mut request = Vec::new();
            (&mut stream).take(MAX_REQUEST + 1).read_to_end(&mut request)?;
            if request.len() as u64 > MAX_REQUEST {
                Reply::Refused { error: format!("request over {MAX_REQUEST} bytes"), errno: None }
            } else {
                match serde_json::from_slice::<Request>(&request) {
                    Ok(request) => carry_out(request, nl),
                    Err(e) => Reply::Refused { error: format!("malformed request: {e}"), errno: None },
                }
            }
        }
        uid => Reply::Refused { error: format!("uid {uid} is not root"), errno: Some(libc::EPERM) },
    };
    if let Reply::Refused { error, .. } = &reply {
        tracing::warn!("refused a request: {error}");
    }
    stream.write_all(&serde_json::to_vec(&reply).map_err(io::Error::other)?)
}

fn carry_out(request: Request, nl: &Netlink) -> Reply {
    let done = match request {
        Request::Sync { ruleset, full } => sync_on(nl, &ruleset, full, true).map(Reply::Synced),
        Request::Remove => delete_on(nl).map(Reply::Removed),
    };
    done.unwrap_or_else(|e| Reply::Refused { error: e.to_string(), errno: e.raw_os_error() })
}

/// The user id of the process at the other end.
fn peer_uid(stream: &UnixStream) -> io::Result<u32> {
    // SAFETY: a zeroed ucred is valid; getsockopt fills at most its size.
    let mut cred: libc::ucred = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    let ok = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    } == 0;
    if ok { Ok(cred.uid) } else { Err(io::Error::last_os_error()) }
}
