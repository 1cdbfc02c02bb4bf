//! The HTTP side of the Linode API v4: the token, paging, `X-Filter`, rate limits, and retries
//! that are safe: a request is repeated only when it surely did nothing (429, "Linode busy.",
//! nginx's HTML 400, a refused connection) or when the caller has said how to find out what
//! it did (see [`Outcome`]).

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::credentials::Token;
use super::limits::{Class, Limiter};
use super::types::{ApiError, ApiErrors, Page};

/// How hard to try.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all, the first one included.
    pub attempts: u32,
    /// The first backoff; it doubles each time, up to `cap`, with jitter.
    pub base: Duration,
    pub cap: Duration,
    /// One request's time limit.
    pub timeout: Duration,
    /// How often waits poll (instance status, disks, volumes, events).
    pub poll: Duration,
    /// How long a wait may take in all.
    pub wait_limit: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 8,
            base: Duration::from_millis(500),
            cap: Duration::from_secs(30),
            timeout: Duration::from_secs(60),
            poll: Duration::from_secs(3),
            wait_limit: Duration::from_secs(900),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiFailure {
    /// The API refused, with its reasons (and their fields).
    #[error("{method} {path}: {status} {}", reasons(.errors))]
    Api { method: String, path: String, status: u16, errors: Vec<ApiError> },
    /// It may or may not have been done (a timeout, 408, 5xx): the caller must look.
    #[error("{method} {path}: outcome unknown: {message}")]
    Unknown { method: String, path: String, message: String },
    #[error("{method} {path}: {message}")]
    Transport { method: String, path: String, message: String },
    #[error("{method} {path}: gave up after {attempts} attempts; last: {last}")]
    Exhausted { method: String, path: String, attempts: u32, last: String },
    #[error("{method} {path}: the response is not what the API sends: {message}")]
    Decode { method: String, path: String, message: String },
    /// Refused before any request: the field and why.
    #[error("field {field}: {message}")]
    Invalid { field: String, message: String },
    #[error("{0}")]
    Timeout(String),
    #[error(transparent)]
    Random(#[from] lct_core::random::RandomError),
}

impl ApiFailure {
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiFailure::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }
}

fn reasons(errors: &[ApiError]) -> String {
    errors
        .iter()
        .map(|e| match &e.field {
            Some(f) => format!("field {f}: {}", e.reason),
            None => e.reason.clone(),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// What to do when a request's outcome is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Repeating it is harmless (reads, updates, deletes, most actions): retry.
    Retry,
    /// Repeating could do it twice (a create): return [`ApiFailure::Unknown`] so the caller
    /// looks before it tries again.
    Report,
}

/// Counts of what happened, for the curious (the benchmark prints them).
#[derive(Debug, Default)]
pub struct Stats {
    pub requests: std::sync::atomic::AtomicU64,
    pub throttled: std::sync::atomic::AtomicU64,
    pub retried: std::sync::atomic::AtomicU64,
}

/// A client of one API endpoint with one token. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: String,
    token: Token,
    limiter: Limiter,
    retry: RetryPolicy,
    stats: Stats,
    jitter: Jitter,
}

/// Installs ring as rustls's crypto (once): the build has no other provider.
fn crypto() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

impl Client {
    pub fn new(base: String, token: Token, limiter: Limiter, retry: RetryPolicy) -> Result<Client, ApiFailure> {
        crypto();
        let http = reqwest::Client::builder()
            .user_agent(concat!("lct/", env!("CARGO_PKG_VERSION")))
            .timeout(retry.timeout)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ApiFailure::Transport { method: "-".into(), path: base.clone(), message: e.to_string() })?;
        let jitter = Jitter::new()?;
        Ok(Client { inner: Arc::new(Inner { http, base, token, limiter, retry, stats: Stats::default(), jitter }) })
    }

    pub fn retry(&self) -> &RetryPolicy {
        &self.inner.retry
    }

    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    pub fn base(&self) -> &str {
        &self.inner.base
    }

    /// One call, retried as [`Outcome`] allows. `path` is below the base URL (`/regions`).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        filter: Option<&Value>,
        body: Option<&Value>,
        outcome: Outcome,
    ) -> Result<Value, ApiFailure> {
        use std::sync::atomic::Ordering::Relaxed;
        let inner = &self.inner;
        let collection = query.iter().any(|(k, _)| *k == "page");
        let class = Class::of(method.as_str(), path, collection);
        let m = method.to_string();
        let mut last = String::new();
        for attempt in 1..=inner.retry.attempts {
            inner.limiter.acquire(class).await;
            inner.stats.requests.fetch_add(1, Relaxed);
            let mut request = inner
                .http
                .request(method.clone(), format!("{}{path}", inner.base))
                .header("Authorization", inner.token.bearer())
                .header("Accept", "application/json")
                .query(query);
            if let Some(f) = filter {
                request = request.header("X-Filter", f.to_string());
            }
            if let Some(b) = body {
                request = request.json(b);
            }
            // Why the attempt failed, and whether the request may have been carried out.
            let (why, maybe_done, wait) = match request.send().await {
                Err(e) => {
                    // Connecting failed: nothing was sent. Anything later: it may have been.
                    let maybe_done = !e.is_connect();
                    (without_url(e), maybe_done, None)
                }
                Ok(response) => {
                    let status = response.status().as_u16();
                    let headers = response.headers().clone();
                    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
                    let number = |name: &str| header(name).and_then(|v| v.trim().parse::<u64>().ok());
                    inner.limiter.observe(
                        class,
                        number("X-RateLimit-Limit").map(|n| n as u32),
                        number("X-RateLimit-Remaining").map(|n| n as u32),
                        number("X-RateLimit-Reset"),
                    );
                    let html = header("Content-Type").is_some_and(|c| c.contains("text/html"));
                    let text = response.text().await.unwrap_or_default();
                    tracing::debug!(method = %m, path, status, attempt, "linode api");
                    if (200..300).contains(&status) {
                        if text.trim().is_empty() {
                            return Ok(Value::Null);
                        }
                        return serde_json::from_str(&text).map_err(|e| ApiFailure::Decode {
                            method: m.clone(),
                            path: path.into(),
                            message: e.to_string(),
                        });
                    }
                    let errors: Vec<ApiError> =
                        serde_json::from_str::<ApiErrors>(&text).map(|e| e.errors).unwrap_or_default();
                    let busy = errors.iter().any(|e| e.reason.contains("Linode busy"));
                    let retry_after = number("Retry-After").map(Duration::from_secs);
                    match status {
                        429 => {
                            inner.stats.throttled.fetch_add(1, Relaxed);
                            // Wait as asked, a little more, never less. Without Retry-After (the
                            // recorded real 429s have none), until the window resets if that is
                            // known, else a growing backoff of at least a second.
                            let reset = number("X-RateLimit-Reset").map(|r| {
                                let now = std::time::SystemTime::now()
                                    .duration_since(std::time::UNIX_EPOCH)
                                    .map_or(0, |d| d.as_secs());
                                Duration::from_secs(r.saturating_sub(now))
                            });
                            let wait = retry_after
                                .or(reset)
                                .unwrap_or_else(|| self.backoff(attempt).max(Duration::from_secs(1)));
                            inner.limiter.refused(class, wait + Duration::from_millis(50));
                            ("429 Too many requests".to_string(), false, Some(Duration::ZERO))
                        }
                        400 if html => ("400 from the load balancer (HTML)".to_string(), false, None),
                        400 if busy => ("400 Linode busy.".to_string(), false, None),
                        408 => ("408 Please try again".to_string(), true, None),
                        503 if header("X-Maintenance-Mode").is_some() => {
                            return Err(ApiFailure::Api {
                                method: m,
                                path: path.into(),
                                status,
                                errors: vec![ApiError { reason: "the API is in maintenance mode".into(), field: None }],
                            });
                        }
                        500..=599 => (format!("{status} {}", reasons(&errors)), true, None),
                        _ => {
                            let errors = if errors.is_empty() {
                                vec![ApiError { reason: text.chars().take(200).collect(), field: None }]
                            } else {
                                errors
                            };
                            return Err(ApiFailure::Api { method: m, path: path.into(), status, errors });
                        }
                    }
                }
            };
            if maybe_done && outcome == Outcome::Report {
                return Err(ApiFailure::Unknown { method: m, path: path.into(), message: why });
            }
            inner.stats.retried.fetch_add(1, Relaxed);
            tracing::info!(method = %m, path, attempt, "retrying: {why}");
            last = why;
            if attempt < inner.retry.attempts {
                tokio::time::sleep(wait.unwrap_or_else(|| self.backoff(attempt))).await;
            }
        }
        Err(ApiFailure::Exhausted { method: m, path: path.into(), attempts: inner.retry.attempts, last })
    }

    /// Exponential backoff with "equal jitter": half fixed, half random.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let r = &self.inner.retry;
        let full = r.base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16)).min(r.cap);
        full / 2 + full.mul_f64(self.inner.jitter.next() / 2.0)
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiFailure> {
        let v = self.call(Method::GET, path, &[], None, None, Outcome::Retry).await?;
        decode("GET", path, v)
    }

    /// Every item of a collection: pages of 500, the first alone (it tells how many), the
    /// rest four at a time.
    pub async fn list<T: DeserializeOwned + Send + 'static>(
        &self,
        path: &str,
        filter: Option<&Value>,
    ) -> Result<Vec<T>, ApiFailure> {
        let first: Page<T> = self.page(path, filter, 1).await?;
        let mut items = first.data;
        let mut next = 2;
        while next <= first.pages {
            let mut set = tokio::task::JoinSet::new();
            for page in next..=(next + 3).min(first.pages) {
                let (client, path, filter) = (self.clone(), path.to_string(), filter.cloned());
                set.spawn(async move { (page, client.page::<T>(&path, filter.as_ref(), page).await) });
            }
            let mut pages = Vec::new();
            while let Some(done) = set.join_next().await {
                let (page, result) = done.map_err(|e| ApiFailure::Transport {
                    method: "GET".into(),
                    path: path.into(),
                    message: e.to_string(),
                })?;
                pages.push((page, result?));
            }
            pages.sort_by_key(|(p, _)| *p);
            next += pages.len() as u32;
            items.extend(pages.into_iter().flat_map(|(_, p)| p.data));
        }
        Ok(items)
    }

    async fn page<T: DeserializeOwned>(
        &self,
        path: &str,
        filter: Option<&Value>,
        page: u32,
    ) -> Result<Page<T>, ApiFailure> {
        let query = [("page", page.to_string()), ("page_size", "500".to_string())];
        let v = self.call(Method::GET, path, &query, filter, None, Outcome::Retry).await?;
        decode("GET", path, v)
    }

    pub async fn post<T: DeserializeOwned>(&self, path: &str, body: &Value, outcome: Outcome) -> Result<T, ApiFailure> {
        let v = self.call(Method::POST, path, &[], None, Some(body), outcome).await?;
        decode("POST", path, v)
    }

    pub async fn put<T: DeserializeOwned>(&self, path: &str, body: &Value) -> Result<T, ApiFailure> {
        let v = self.call(Method::PUT, path, &[], None, Some(body), Outcome::Retry).await?;
        decode("PUT", path, v)
    }

    /// Deletes; `false` if it was not there (also when a retried delete finds it gone).
    pub async fn delete(&self, path: &str) -> Result<bool, ApiFailure> {
        match self.call(Method::DELETE, path, &[], None, None, Outcome::Retry).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// An action without a body worth reading (`/boot`, `/shutdown`, `/attach`...).
    pub async fn action(&self, path: &str, body: &Value) -> Result<(), ApiFailure> {
        self.call(Method::POST, path, &[], None, Some(body), Outcome::Retry).await.map(|_| ())
    }
}

/// reqwest's message and its causes, without the URL (it holds nothing secret, but keeps
/// errors short).
fn without_url(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut s = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

pub fn decode<T: DeserializeOwned>(method: &str, path: &str, v: Value) -> Result<T, ApiFailure> {
    serde_path_to_error::deserialize(v).map_err(|e| ApiFailure::Decode {
        method: method.into(),
        path: path.into(),
        message: e.to_string(),
    })
}

/// Numbers in [0, 1) for backoff jitter: xorshift from a seed of the system's random source
/// (jitter only spreads retries; it need not be unpredictable, only differ between clients).
struct Jitter(std::sync::atomic::AtomicU64);

impl Jitter {
    fn new() -> Result<Jitter, ApiFailure> {
        Ok(Jitter(std::sync::atomic::AtomicU64::new(lct_core::random::u64()? | 1)))
    }

    fn next(&self) -> f64 {
        use std::sync::atomic::Ordering;
        let mut x = self.0.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0.store(x, Ordering::Relaxed);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}
