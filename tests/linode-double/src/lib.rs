//! A stateful test double of the Linode API v4, as the recorded real traffic and NOTICE.md
//! in `shared/linode-api` show it behaving: instances, disks, configs, IPs, images (capture
//! and upload), volumes, domains and records, Cloud Firewalls, regions, types, events, tags,
//! StackScripts, NodeBalancers (configs and nodes); asynchronous status changes on a clock
//! that tests can speed up or move forward; "Linode busy." while a job runs; per-operation
//! rate limits with their headers and 429s; a new disk missing from its list for a moment;
//! pages and `X-Filter` with their errors; JSON error bodies; and knobs that inject 408, 503,
//! nginx's HTML 400 and dropped connections, before or after the request is carried out.
//!
//! For tests and benchmarks only: no shipped binary depends on it.
//!
//! This file: the configuration, fault knobs, statistics, the server and what every request
//! goes through (token, rate limits, faults); `state`: the resources, clock and behaviours;
//! `routes`: each path; [`filter`]: `X-Filter`.

mod crud;
mod disks;
pub mod filter;
mod networking;
mod routes;
mod state;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

pub mod backing;
pub mod backing_disks;
use std::time::{Duration, Instant, SystemTime};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use serde_json::{Value, json};

use routes::{control, route, upload};
use state::*;

/// How the double behaves. Delays are in the double's seconds (see `speed`).
#[derive(Debug, Clone)]
pub struct Config {
    pub token: String,
    /// Double seconds per real second: 1 for the benchmark, 100 for quick tests.
    pub speed: f64,
    pub provision: f64,
    pub boot: f64,
    pub shutdown: f64,
    /// How long a new disk is missing from its instance's list (and its GET is 404).
    pub disk_hidden: f64,
    pub disk_ready: f64,
    pub volume_ready: f64,
    pub attach: f64,
    pub image_ready: f64,
    /// Per rate-limit class: requests per window (seconds, real time).
    pub limits: HashMap<&'static str, (u32, f64)>,
    /// Instances backed by local machine nodes (`--backing local`).
    pub backing: Option<backing::Backing>,
}

/// Linode's documented limits (NOTICE.md).
pub fn linode_limits() -> HashMap<&'static str, (u32, f64)> {
    HashMap::from([
        ("create_instance", (20, 15.0)),
        ("create_volume", (100, 60.0)),
        ("list_images", (20, 60.0)),
        ("list_stackscripts", (60, 60.0)),
        ("collection", (200, 60.0)),
        ("other", (1600, 60.0)),
    ])
}

impl Config {
    /// Real limits and realistic delays, in real time: the benchmark's.
    pub fn realistic() -> Config {
        Config {
            token: "test-token".into(),
            speed: 1.0,
            provision: 12.0,
            boot: 8.0,
            shutdown: 5.0,
            disk_hidden: 2.0,
            disk_ready: 6.0,
            volume_ready: 5.0,
            attach: 4.0,
            image_ready: 10.0,
            limits: linode_limits(),
            backing: None,
        }
    }

    /// The same, a hundred times faster: for tests.
    pub fn fast() -> Config {
        Config { speed: 100.0, ..Config::realistic() }
    }
}

/// What went wrong on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// 408 "Please try again".
    Timeout408,
    /// 503 without `X-Maintenance-Mode`.
    Unavailable503,
    /// 503 with `X-Maintenance-Mode`: not to be retried.
    Maintenance503,
    /// nginx's text/html 400.
    Html400,
    /// 400 "Linode busy.".
    Busy,
    /// The connection closes without an answer.
    Drop,
}

impl FaultKind {
    pub fn parse(s: &str) -> Option<FaultKind> {
        Some(match s {
            "408" => FaultKind::Timeout408,
            "503" => FaultKind::Unavailable503,
            "maintenance" => FaultKind::Maintenance503,
            "html400" => FaultKind::Html400,
            "busy" => FaultKind::Busy,
            "drop" => FaultKind::Drop,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
pub struct Fault {
    /// `GET`, `POST`, ... (`None`: any).
    pub method: Option<String>,
    /// Matches paths that start with it (below the version: `/linode/instances`).
    pub path: String,
    pub kind: FaultKind,
    /// How many requests it hits.
    pub count: u32,
    /// Carry the request out first, then answer with the fault: the client cannot know.
    pub after: bool,
}

/// What the double saw.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub requests: u64,
    pub by_class: BTreeMap<String, u64>,
    /// 429s sent.
    pub throttled: u64,
    /// Requests of a class that arrived before the `Retry-After` its 429 asked for (those
    /// that crossed the 429 on the wire aside).
    pub early_after_429: u64,
    /// Instances created per label, over the whole run (deleted ones too).
    pub created_labels: BTreeMap<String, u32>,
    pub faults_served: u64,
    /// The requests that passed the token check, in order: method, path (below the
    /// version) and JSON body; the last [`LOG_MAX`].
    pub log: Vec<(String, String, Value)>,
}

/// How many requests [`Stats::log`] keeps.
pub const LOG_MAX: usize = 20_000;

impl Stats {
    /// The logged requests as `METHOD /path`, those whose path contains `part` only.
    pub fn requests(&self, part: &str) -> Vec<String> {
        self.log.iter().filter(|(_, p, _)| p.contains(part)).map(|(m, p, _)| format!("{m} {p}")).collect()
    }

    pub fn duplicates(&self) -> Vec<String> {
        self.created_labels.iter().filter(|(_, n)| **n > 1).map(|(l, _)| l.clone()).collect()
    }

    pub fn to_json(&self) -> Value {
        json!({
            "requests": self.requests,
            "by_class": self.by_class,
            "throttled": self.throttled,
            "early_after_429": self.early_after_429,
            "instances_created": self.created_labels.values().sum::<u32>(),
            "duplicates": self.duplicates(),
            "faults_served": self.faults_served,
        })
    }
}

/// Which rate limit a request counts against (NOTICE.md).
fn class_of(method: &str, path: &str, paginated: bool) -> &'static str {
    match (method, path) {
        ("POST", "/linode/instances") => "create_instance",
        ("POST", "/volumes") => "create_volume",
        ("GET", "/images") => "list_images",
        ("GET", "/linode/stackscripts") => "list_stackscripts",
        ("GET", _) if paginated => "collection",
        _ => "other",
    }
}

/// The double: a server on 127.0.0.1 with its own runtime thread. Dropping it stops it.
pub struct Double {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Double {
    /// Starts on a free loopback port (or `port`).
    pub fn start(cfg: Config) -> Double {
        Double::start_on(cfg, 0)
    }

    pub fn start_on(cfg: Config, port: u16) -> Double {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind the double's port");
        listener.set_nonblocking(true).expect("non-blocking");
        let addr = listener.local_addr().expect("its address");
        let mut state = State {
            cfg,
            started: Instant::now(),
            epoch: SystemTime::now(),
            offset: 0.0,
            next_id: 1000,
            kinds: HashMap::new(),
            windows: HashMap::new(),
            faults: Vec::new(),
            stats: Stats::default(),
            base_url: format!("http://{addr}"),
            uploads: HashMap::new(),
        };
        state.seed_catalog();
        let state = Arc::new(Mutex::new(state));
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let shared = state.clone();
        let thread = std::thread::spawn(move || {
            let runtime =
                tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime");
            runtime.block_on(serve(listener, shared, stopped));
        });
        Double { addr, state, stop: Some(stop), thread: Some(thread) }
    }

    /// The base URL for `LINODE_URL`.
    pub fn url(&self) -> String {
        format!("http://{}/v4", self.addr)
    }

    pub fn token(&self) -> String {
        self.state.lock().expect("not poisoned").cfg.token.clone()
    }

    pub fn inject(&self, fault: Fault) {
        self.state.lock().expect("not poisoned").faults.push(fault);
    }

    /// The bytes PUT to image `id`'s upload URL (`private/N`), if any.
    pub fn upload(&self, id: &str) -> Option<Vec<u8>> {
        self.state.lock().expect("not poisoned").uploads.get(id).cloned()
    }

    /// Moves the double's clock forward: pending changes that are due take effect.
    pub fn advance(&self, seconds: f64) {
        self.state.lock().expect("not poisoned").offset += seconds;
    }

    pub fn stats(&self) -> Stats {
        self.state.lock().expect("not poisoned").stats.clone()
    }

    /// Adds `count` running instances labelled `PREFIX0`... without requests.
    pub fn seed_instances(&self, count: u64, prefix: &str) {
        self.state.lock().expect("not poisoned").seed_instances(count, prefix);
    }

    /// Sets a rate limit (requests per window in real seconds) of a class.
    pub fn set_limit(&self, class: &'static str, limit: u32, window: f64) {
        self.state.lock().expect("not poisoned").cfg.limits.insert(class, (limit, window));
    }
}

impl Drop for Double {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn serve(
    listener: std::net::TcpListener,
    state: Arc<Mutex<State>>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
    loop {
        let (stream, _) = tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => continue,
            },
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { handle(req, state).await }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new().keep_alive(true).serve_connection(io, service).await;
        });
    }
}

#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped on purpose")
    }
}

impl std::error::Error for Dropped {}

async fn handle(req: Request<Incoming>, state: Arc<Mutex<State>>) -> Result<Response<Full<Bytes>>, Dropped> {
    let method = req.method().to_string();
    let uri = req.uri().clone();
    let headers = req.headers().clone();
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let mut s = state.lock().expect("not poisoned");
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let query: HashMap<String, String> = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let full_path = uri.path().to_string();

    // The test's own controls and the upload URL need no token.
    if let Some(rest) = full_path.strip_prefix("/_double/") {
        return Ok(respond(control(&mut s, &method, rest, &body)));
    }
    if let Some(id) = full_path.strip_prefix("/_upload/") {
        // As Object Storage's presigned PUT: a length up front, no chunked uploads.
        if header("content-length").is_none() {
            return Ok(respond(error(411, "Length Required", None)));
        }
        return Ok(respond(upload(&mut s, id, &body)));
    }
    let Some(path) = full_path.strip_prefix("/v4beta").or_else(|| full_path.strip_prefix("/v4")) else {
        return Ok(respond(error(404, "Not found", None)));
    };
    let path = path.trim_end_matches('/').to_string();
    s.stats.requests += 1;
    if header("Authorization") != Some(format!("Bearer {}", s.cfg.token)) {
        return Ok(respond(error(401, "Invalid Token", None)));
    }

    // Rate limits, per class, in fixed windows of real time.
    let class = class_of(&method, &path, query.contains_key("page") || is_collection(&method, &path));
    *s.stats.by_class.entry(class.to_string()).or_default() += 1;
    let (limit, window) = s.cfg.limits.get(class).copied().unwrap_or((1600, 60.0));
    let now = Instant::now();
    let w = s.windows.entry(class).or_insert(Window { start: now, count: 0, not_before: None, refused_at: None });
    if now.duration_since(w.start).as_secs_f64() >= window {
        w.start = now;
        w.count = 0;
    }
    let early = w.not_before.is_some_and(|t| now < t) && w.refused_at.is_some_and(|r| now > r + IN_FLIGHT);
    let reset_in = (window - now.duration_since(w.start).as_secs_f64()).max(0.0);
    // The reset as a whole second, never before the window really ends.
    let epoch_now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    let epoch_reset = (epoch_now + reset_in).ceil() as u64;
    let refused = w.count >= limit;
    let retry_after = reset_in.ceil().max(1.0) as u64;
    if refused {
        w.not_before = Some(now + Duration::from_secs(retry_after));
        w.refused_at = Some(now);
    } else {
        w.count += 1;
    }
    let remaining = limit.saturating_sub(w.count);
    if early {
        s.stats.early_after_429 += 1;
    }
    if refused {
        s.stats.throttled += 1;
        let (status, mut hs, v) = error(429, "Too many requests", None);
        hs.push(("Retry-After", retry_after.to_string()));
        hs.push(("X-RateLimit-Limit", limit.to_string()));
        hs.push(("X-RateLimit-Remaining", "0".into()));
        hs.push(("X-RateLimit-Reset", epoch_reset.to_string()));
        return Ok(respond((status, hs, v)));
    }
    let rate_headers = vec![
        ("X-RateLimit-Limit", limit.to_string()),
        ("X-RateLimit-Remaining", remaining.to_string()),
        ("X-RateLimit-Reset", epoch_reset.to_string()),
    ];

    // Faults before the request is carried out, or after.
    let fault = s
        .faults
        .iter_mut()
        .find(|f| f.count > 0 && f.method.as_ref().is_none_or(|m| *m == method) && path.starts_with(&f.path))
        .map(|f| {
            f.count -= 1;
            (f.kind, f.after)
        });
    if let Some((kind, false)) = fault {
        s.stats.faults_served += 1;
        return fault_response(kind);
    }
    let body: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(_) => return Ok(respond(error(400, "Invalid JSON", None))),
        }
    };
    let filter = header("X-Filter");
    if s.stats.log.len() >= LOG_MAX {
        s.stats.log.remove(0);
    }
    s.stats.log.push((method.clone(), path.clone(), body.clone()));
    // With a backing: the instance an action or a delete is about, before the double acts.
    let backing = s.cfg.backing.clone();
    let segments: Vec<String> = path.trim_matches('/').split('/').map(String::from).collect();
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    let target = match (&backing, method.as_str(), segs.as_slice()) {
        (Some(_), "POST", ["linode", "instances", id, "boot" | "shutdown" | "reboot"])
        | (Some(_), "DELETE", ["linode", "instances", id]) => id
            .parse()
            .ok()
            .and_then(|id| s.find("instances", id, None).ok())
            .and_then(|v| v["label"].as_str().map(String::from)),
        _ => None,
    };
    // What the helper-disk way asks of the backing, read before the double acts.
    let instance_id: Option<u64> = segs.get(2).and_then(|id| id.parse().ok());
    let (boot, raw_disks) = match (&backing, method.as_str(), segs.as_slice(), instance_id) {
        (Some(_), "POST", ["linode", "instances", _, "boot" | "reboot"], Some(id)) => {
            (backing_disks::boot_of(&s, id, &body), Vec::new())
        }
        (Some(_), "DELETE", ["linode", "instances", _], Some(id)) => (None, backing_disks::raw_disks(&s, id)),
        (Some(_), "DELETE", ["linode", "instances", _, "disks", d], Some(id)) => {
            let d: u64 = d.parse().unwrap_or(0);
            (None, backing_disks::raw_disks(&s, id).into_iter().filter(|r| *r == d).collect())
        }
        _ => (None, Vec::new()),
    };
    let (status, mut hs, mut v) = route(&mut s, &method, &path, &query, filter.as_deref(), &body);
    if let Some(b) = backing.filter(|_| status == 200) {
        // On a thread of its own: the machine side runs its own small runtime.
        let outcome = std::thread::scope(|scope| {
            scope
                .spawn(|| match (method.as_str(), segs.as_slice()) {
                    ("POST", ["linode", "instances"]) if v["image"].is_string() => b.create(&body, &v).map(Some),
                    ("POST", ["linode", "instances"]) => Ok(None),
                    ("POST", ["linode", "instances", _, "disks"]) if body["filesystem"] == json!("raw") => {
                        let (id, size) = (v["id"].as_u64().unwrap_or(0), v["size"].as_u64().unwrap_or(0));
                        b.raw_disk(id, size).map(|()| None)
                    }
                    ("POST", [.., "boot" | "reboot"]) if boot.as_ref().is_some_and(|b| b.user_data.is_some()) => {
                        let (label, boot) = (target.as_deref().unwrap_or_default(), boot.as_ref().expect("some"));
                        b.boot(label, boot)
                    }
                    ("POST", [.., action]) => target.as_deref().map_or(Ok(None), |l| match &boot {
                        // A profile with raw disks: one start, the disks made visible after it.
                        Some(boot) if *action != "shutdown" && !boot.raw.is_empty() => {
                            if *action == "reboot" {
                                b.power(l, "shutdown")?;
                            }
                            b.boot(l, boot).map(drop).map(|()| None)
                        }
                        _ => b.power(l, action).map(|()| None),
                    }),
                    ("DELETE", _) => {
                        target.as_deref().map_or(Ok(()), |l| b.delete(l))?;
                        b.delete_disks(&raw_disks).map(|()| None)
                    }
                    _ => Ok(None),
                })
                .join()
                .unwrap_or_else(|_| Err("the backing panicked".into()))
        });
        match outcome {
            Ok(Some((ipv4, ipv6))) => {
                let id = v["id"].as_u64().or(instance_id).unwrap_or(0);
                if let Some(obj) = s.kind("instances").get_mut(&id) {
                    obj.v = backing::with_addresses(obj.v.clone(), &ipv4, &ipv6);
                }
                if v["id"].as_u64() == Some(id) {
                    v = backing::with_addresses(v, &ipv4, &ipv6);
                }
            }
            Ok(None) => {}
            Err(e) => return Ok(respond(error(500, &format!("the backing machine: {e}"), None))),
        }
        // The first boot data of an instance made without an image: a helper disk's boot
        // takes it (the API keeps it, write-only).
        if let (["linode", "instances"], "POST", Some(id)) = (segs.as_slice(), method.as_str(), v["id"].as_u64())
            && let Some(data) = body["metadata"]["user_data"].as_str()
            && let Some(obj) = s.kind("instances").get_mut(&id)
        {
            obj.v["_user_data"] = data_encoding::BASE64
                .decode(data.as_bytes())
                .map(|d| json!(String::from_utf8_lossy(&d)))
                .unwrap_or(Value::Null);
        }
    }
    if let Some((kind, true)) = fault {
        s.stats.faults_served += 1;
        return fault_response(kind);
    }
    hs.extend(rate_headers);
    Ok(respond((status, hs, v)))
}

fn is_collection(method: &str, path: &str) -> bool {
    method == "GET"
        && path.rsplit('/').next().is_some_and(|last| last.parse::<u64>().is_err())
        && !path.ends_with("/rules")
        && !path.starts_with("/images/")
}

fn fault_response(kind: FaultKind) -> Result<Response<Full<Bytes>>, Dropped> {
    let reply = match kind {
        FaultKind::Drop => return Err(Dropped),
        FaultKind::Timeout408 => error(408, "Please try again", None),
        FaultKind::Unavailable503 => error(503, "Service Unavailable", None),
        FaultKind::Maintenance503 => {
            let (s, mut h, v) = error(503, "Currently in maintenance mode.", None);
            h.push(("X-Maintenance-Mode", "true".into()));
            (s, h, v)
        }
        FaultKind::Busy => error(400, "Linode busy.", None),
        FaultKind::Html400 => {
            let html = "<html>\r\n<head><title>400 Bad Request</title></head>\r\n<body>\r\n<center><h1>400 Bad Request</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";
            return Ok(Response::builder()
                .status(400)
                .header("Content-Type", "text/html")
                .body(Full::new(Bytes::from(html)))
                .expect("a response"));
        }
    };
    Ok(respond(reply))
}

fn respond((status, headers, v): Reply) -> Response<Full<Bytes>> {
    let mut r = Response::builder().status(status).header("Content-Type", "application/json");
    for (k, val) in headers {
        r = r.header(k, val);
    }
    r.body(Full::new(Bytes::from(v.to_string()))).expect("a response")
}
