//! The members of one etcd cluster and how a request reaches one: the member that answered
//! last first, the next on failure; timeouts on connecting and answering; answers read up to
//! a bound; etcd's own refusals (a gRPC status through the gateway) told apart from broken
//! connections, and retried while the cluster elects a leader.

use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::EtcdError;
use super::tls::TlsFiles;
use super::url::EtcdUrl;
use super::wire::GatewayError;

/// Timeouts and bounds of a client.
#[derive(Debug, Clone)]
pub struct Options {
    /// Connecting to one member (TCP and TLS).
    pub connect_timeout: Duration,
    /// One request's answer (headers and body) from one member.
    pub request_timeout: Duration,
    /// How long a request is tried again while the cluster has no leader or members fail.
    pub retry_for: Duration,
    /// The largest answer read (ranges are paged well below it).
    pub max_response: u64,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(10),
            retry_for: Duration::from_secs(20),
            max_response: 64 << 20,
        }
    }
}

/// Whether a request may be sent again after its connection broke mid-way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Retry {
    /// Reads, and writes that mean the same when applied twice (a revoke, a keepalive).
    Always,
    /// Writes: again only when it surely was not applied.
    IfNotSent,
}

/// A client of one etcd cluster. Cheap to share between threads (`&Client`).
pub struct Client {
    agent: ureq::Agent,
    /// `http://HOST:PORT` or `https://HOST:PORT`.
    bases: Vec<String>,
    endpoints: Vec<String>,
    preferred: AtomicUsize,
    pub(super) options: Options,
    pub(super) prefix: String,
}

/// How one attempt failed.
enum Attempt {
    /// Not sent (refused, unreachable, TLS refused): another member may serve it.
    NotSent(String),
    /// Sent, outcome unknown (connection broke, timed out waiting).
    Broken(String),
    /// The member has no leader or is overloaded and did not propose it: later, or elsewhere.
    Unavailable(String),
    /// A final answer.
    Final(EtcdError),
}

impl Client {
    /// A client for `url`'s members, TLS from `tls` (which only an `etcds://` URL may use).
    /// Files are read now; nothing is connected to until the first request.
    pub fn new(url: &EtcdUrl, tls: &TlsFiles, options: Options) -> Result<Client, EtcdError> {
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(options.connect_timeout))
            .timeout_recv_response(Some(options.request_timeout))
            .timeout_recv_body(Some(options.request_timeout))
            .timeout_send_body(Some(options.request_timeout))
            .max_redirects(0)
            .user_agent(concat!("lct/", env!("CARGO_PKG_VERSION")));
        if url.tls {
            config = config.tls_config(tls.config()?).https_only(true);
        } else if !tls.is_empty() {
            return Err(EtcdError::Url {
                url: url.to_url(),
                why: "TLS files are set (LCT_ETCD_CACERT, LCT_ETCD_CERT, LCT_ETCD_KEY) but the URL is plain etcd://: \
                      use etcds:// for TLS"
                    .into(),
            });
        }
        let scheme = if url.tls { "https" } else { "http" };
        Ok(Client {
            agent: config.build().into(),
            bases: url.endpoints.iter().map(|e| format!("{scheme}://{e}")).collect(),
            endpoints: url.endpoints.clone(),
            preferred: AtomicUsize::new(0),
            options,
            prefix: format!("{}/", url.prefix),
        })
    }

    /// `PREFIX/`: every key of lct's starts with it.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// Sends `request` to `path` and reads its answer, trying the members in turn.
    pub(super) fn call<Q: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        request: &Q,
        retry: Retry,
    ) -> Result<R, EtcdError> {
        let body = serde_json::to_vec(request).expect("etcd requests serialize");
        let (endpoint, bytes) = self.exchange(path, &body, retry, None)?;
        serde_json::from_slice(&bytes)
            .map_err(|e| EtcdError::Protocol { endpoint, why: format!("{path}: unexpected JSON: {e}") })
    }

    /// Sends a request and returns the open answer of the first member that took it, for
    /// streams (watch): `wait` bounds each read of the body.
    pub(super) fn stream(
        &self,
        path: &str,
        request: &impl Serialize,
        wait: Duration,
    ) -> Result<(String, Box<dyn Read + Send>), EtcdError> {
        let body = serde_json::to_vec(request).expect("etcd requests serialize");
        self.exchange_open(path, &body, Retry::Always, Some(wait))
    }

    fn exchange(
        &self,
        path: &str,
        body: &[u8],
        retry: Retry,
        wait: Option<Duration>,
    ) -> Result<(String, Vec<u8>), EtcdError> {
        let (endpoint, mut reader) = self.exchange_open(path, body, retry, wait)?;
        let mut bytes = Vec::new();
        let limit = self.options.max_response;
        reader.by_ref().take(limit + 1).read_to_end(&mut bytes).map_err(|e| match retry {
            Retry::Always => {
                EtcdError::Protocol { endpoint: endpoint.clone(), why: format!("reading the answer: {e}") }
            }
            Retry::IfNotSent => {
                EtcdError::Ambiguous { endpoint: endpoint.clone(), why: format!("reading the answer: {e}") }
            }
        })?;
        if bytes.len() as u64 > limit {
            return Err(EtcdError::TooLarge { endpoint, limit });
        }
        Ok((endpoint, bytes))
    }

    /// One request, with failover and retries; the successful answer's body unread.
    fn exchange_open(
        &self,
        path: &str,
        body: &[u8],
        retry: Retry,
        wait: Option<Duration>,
    ) -> Result<(String, Box<dyn Read + Send>), EtcdError> {
        let deadline = Instant::now() + self.options.retry_for;
        let n = self.bases.len();
        let mut pause = Duration::from_millis(50);
        let mut failures: Vec<String> = Vec::new();
        let mut passes = 0;
        loop {
            let start = self.preferred.load(Ordering::Relaxed);
            let mut unavailable = false;
            failures.clear();
            for i in 0..n {
                let at = (start + i) % n;
                match self.attempt(at, path, body, wait) {
                    Ok(reader) => {
                        self.preferred.store(at, Ordering::Relaxed);
                        return Ok((self.endpoints[at].clone(), reader));
                    }
                    Err(Attempt::Final(e)) => return Err(e),
                    Err(Attempt::NotSent(why)) => failures.push(format!("{}: {why}", self.endpoints[at])),
                    Err(Attempt::Unavailable(why)) => {
                        unavailable = true;
                        failures.push(format!("{}: {why}", self.endpoints[at]));
                    }
                    Err(Attempt::Broken(why)) => {
                        if retry == Retry::IfNotSent {
                            return Err(EtcdError::Ambiguous { endpoint: self.endpoints[at].clone(), why });
                        }
                        unavailable = true;
                        failures.push(format!("{}: {why}", self.endpoints[at]));
                    }
                }
            }
            passes += 1;
            // Every member unreachable twice: etcd is not there (a wrong URL, a stopped
            // cluster); say so at once. A member that answers "no leader" is worth waiting for.
            let give_up = if unavailable { Instant::now() + pause >= deadline } else { passes >= 2 };
            if give_up {
                return Err(EtcdError::Unreachable {
                    endpoints: self.endpoints.join(","),
                    detail: failures.join("; "),
                });
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    fn attempt(
        &self,
        at: usize,
        path: &str,
        body: &[u8],
        wait: Option<Duration>,
    ) -> Result<Box<dyn Read + Send>, Attempt> {
        let url = format!("{}{path}", self.bases[at]);
        let mut request = self.agent.post(&url).header("Content-Type", "application/json");
        if let Some(wait) = wait {
            request = request.config().timeout_recv_body(None).timeout_per_read(Some(wait)).build();
        }
        let response = request.send(body).map_err(classify)?;
        let status = response.status().as_u16();
        let endpoint = &self.endpoints[at];
        if status == 200 {
            return Ok(Box::new(response.into_body().into_reader()));
        }
        let mut body = response.into_body();
        let text = body.with_config().limit(64 << 10).read_to_vec().unwrap_or_default();
        let error: GatewayError = match serde_json::from_slice(&text) {
            Ok(e) => e,
            Err(_) => {
                let shown = String::from_utf8_lossy(&text[..text.len().min(200)]).into_owned();
                return Err(Attempt::Final(EtcdError::Protocol {
                    endpoint: endpoint.clone(),
                    why: format!("HTTP {status} to {path}: {shown:?}"),
                }));
            }
        };
        let message = if error.message.is_empty() { error.error } else { error.message };
        Err(server_error(endpoint, error.code, message))
    }
}

/// etcd's refusals: those it gives before proposing anything (no leader, too many requests)
/// may go to another member or wait; a timed-out proposal may still be applied.
fn server_error(endpoint: &str, code: i32, message: String) -> Attempt {
    const NOT_PROPOSED: [&str; 4] = [
        "etcdserver: no leader",
        "etcdserver: not capable",
        "etcdserver: too many requests",
        "etcdserver: leader changed",
    ];
    // etcd sends "too many requests" as ResourceExhausted (8), the others as Unavailable (14).
    if (code == 14 || code == 8) && NOT_PROPOSED.iter().any(|m| message.starts_with(m)) {
        return Attempt::Unavailable(message);
    }
    if code == 14 || code == 4 {
        return Attempt::Broken(message);
    }
    if code == 11 && message.contains("compacted") {
        return Attempt::Final(EtcdError::Compacted(0));
    }
    Attempt::Final(EtcdError::Server { endpoint: endpoint.to_string(), code, message })
}

fn classify(e: ureq::Error) -> Attempt {
    use std::io::ErrorKind;
    use ureq::Error as E;
    match e {
        E::ConnectionFailed | E::HostNotFound => Attempt::NotSent(e.to_string()),
        E::Timeout(ureq::Timeout::Connect | ureq::Timeout::Resolve) => Attempt::NotSent(e.to_string()),
        E::Tls(_) => Attempt::NotSent(format!("TLS: {e}")),
        E::Io(io)
            if matches!(
                io.kind(),
                ErrorKind::ConnectionRefused
                    | ErrorKind::AddrNotAvailable
                    | ErrorKind::NetworkUnreachable
                    | ErrorKind::HostUnreachable
            ) =>
        {
            Attempt::NotSent(io.to_string())
        }
        // rustls refusing the other side's certificate (or the other side refusing ours)
        // is an InvalidData error of the handshake, before anything is sent.
        E::Io(io) if io.kind() == ErrorKind::InvalidData => Attempt::NotSent(format!("TLS: {io}")),
        other => Attempt::Broken(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_before_a_proposal_are_tried_again_and_others_are_not() {
        let retried = |code, m: &str| matches!(server_error("m", code, m.into()), Attempt::Unavailable(_));
        assert!(retried(8, "etcdserver: too many requests"));
        assert!(retried(14, "etcdserver: no leader"));
        // Out of space (the NOSPACE alarm) is final: waiting does not free it.
        assert!(!retried(8, "etcdserver: mvcc: database space exceeded"));
        assert!(matches!(server_error("m", 14, "etcdserver: request timed out".into()), Attempt::Broken(_)));
    }
}
