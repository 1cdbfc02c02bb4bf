//! Linode's rate limits, honoured before the server has to refuse: a token bucket per
//! operation class, sized by the documented limits and corrected by the `X-RateLimit-*`
//! headers of every response; a 429's `Retry-After` closes its bucket for that long.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Which limit a request counts against (per token, per operation, as Linode keeps them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// `POST /linode/instances`: 20 per 15 s.
    CreateInstance,
    /// `POST /volumes`: 100 per minute.
    CreateVolume,
    /// `GET /images`: 20 per minute.
    ListImages,
    /// `GET /linode/stackscripts`: 60 per minute.
    ListStackScripts,
    /// Any other paginated collection `GET`: 200 per minute.
    Collection,
    /// Everything else: 1600 per minute.
    Other,
}

impl Class {
    /// The class of a request; `collection` tells whether the path names a collection.
    pub fn of(method: &str, path: &str, collection: bool) -> Class {
        let path = path.split('?').next().unwrap_or(path).trim_end_matches('/');
        match (method, path) {
            ("POST", "/linode/instances") => Class::CreateInstance,
            ("POST", "/volumes") => Class::CreateVolume,
            ("GET", "/images") => Class::ListImages,
            ("GET", "/linode/stackscripts") => Class::ListStackScripts,
            ("GET", _) if collection => Class::Collection,
            _ => Class::Other,
        }
    }

    /// The documented limit: requests per window.
    pub fn documented(self) -> (u32, Duration) {
        match self {
            Class::CreateInstance => (20, Duration::from_secs(15)),
            Class::CreateVolume => (100, Duration::from_secs(60)),
            Class::ListImages => (20, Duration::from_secs(60)),
            Class::ListStackScripts => (60, Duration::from_secs(60)),
            Class::Collection => (200, Duration::from_secs(60)),
            Class::Other => (1600, Duration::from_secs(60)),
        }
    }
}

#[derive(Debug)]
struct Bucket {
    capacity: f64,
    tokens: f64,
    per_second: f64,
    last: Instant,
    /// Closed until then (a 429's Retry-After, or the server said none remain).
    closed_until: Option<Instant>,
}

impl Bucket {
    fn new(limit: u32, window: Duration) -> Bucket {
        Bucket {
            capacity: limit as f64,
            tokens: limit as f64,
            per_second: limit as f64 / window.as_secs_f64(),
            last: Instant::now(),
            closed_until: None,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity);
        self.last = now;
    }

    /// Takes a token, or says how long to wait for one.
    fn take(&mut self, now: Instant) -> Result<(), Duration> {
        if let Some(until) = self.closed_until {
            if now < until {
                return Err(until - now);
            }
            self.closed_until = None;
        }
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.per_second))
        }
    }
}

/// The buckets of one token.
#[derive(Debug, Default)]
pub struct Limiter {
    buckets: Mutex<HashMap<Class, Bucket>>,
    /// Overrides of the documented limits (the test double's small ones, in tests).
    limits: HashMap<Class, (u32, Duration)>,
}

impl Limiter {
    pub fn new() -> Limiter {
        Limiter::default()
    }

    pub fn with_limit(mut self, class: Class, limit: u32, window: Duration) -> Limiter {
        self.limits.insert(class, (limit, window));
        self
    }

    fn with_bucket<R>(&self, class: Class, f: impl FnOnce(&mut Bucket) -> R) -> R {
        let mut buckets = self.buckets.lock().expect("not poisoned");
        let bucket = buckets.entry(class).or_insert_with(|| {
            let (limit, window) = self.limits.get(&class).copied().unwrap_or_else(|| class.documented());
            Bucket::new(limit, window)
        });
        f(bucket)
    }

    /// Waits until a request of `class` may go.
    pub async fn acquire(&self, class: Class) {
        loop {
            match self.with_bucket(class, |b| b.take(Instant::now())) {
                Ok(()) => return,
                Err(wait) => tokio::time::sleep(wait.max(Duration::from_millis(1))).await,
            }
        }
    }

    /// What the server said of this class: `limit` per window, `remaining` now, the window
    /// resets at `reset` (seconds since 1970).
    pub fn observe(&self, class: Class, limit: Option<u32>, remaining: Option<u32>, reset: Option<u64>) {
        let now = Instant::now();
        let until_reset = reset.map(|r| {
            let epoch_now =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
            Duration::from_secs_f64((r as f64 - epoch_now).max(0.0))
        });
        self.with_bucket(class, |b| {
            b.refill(now);
            if let Some(limit) = limit.filter(|l| *l > 0) {
                b.capacity = limit as f64;
                b.tokens = b.tokens.min(b.capacity);
            }
            if let Some(remaining) = remaining {
                // The server counts requests of every client of this token: believe it when it
                // has fewer left than we think.
                b.tokens = b.tokens.min(remaining as f64);
                if remaining == 0
                    && let Some(wait) = until_reset
                {
                    b.closed_until = Some(b.closed_until.map_or(now + wait, |u| u.max(now + wait)));
                }
            }
        });
    }

    /// A 429 said to wait `retry_after`: nothing of this class goes before then.
    pub fn refused(&self, class: Class, retry_after: Duration) {
        let now = Instant::now();
        self.with_bucket(class, |b| {
            b.tokens = 0.0;
            b.last = now;
            b.closed_until = Some(b.closed_until.map_or(now + retry_after, |u| u.max(now + retry_after)));
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        assert_eq!(Class::of("POST", "/linode/instances", true), Class::CreateInstance);
        assert_eq!(Class::of("GET", "/linode/instances", true), Class::Collection);
        assert_eq!(Class::of("GET", "/linode/instances/7", false), Class::Other);
        assert_eq!(Class::of("GET", "/images?page=2", true), Class::ListImages);
    }

    #[tokio::test(start_paused = true)]
    async fn buckets_pace_and_obey_the_server() {
        let limiter = Limiter::new().with_limit(Class::CreateInstance, 2, Duration::from_secs(10));
        let start = tokio::time::Instant::now();
        for _ in 0..3 {
            limiter.acquire(Class::CreateInstance).await;
        }
        // Two at once, the third when a token has dripped back in (5 s).
        let waited = start.elapsed();
        assert!(waited >= Duration::from_secs(4), "{waited:?}");
        limiter.refused(Class::Other, Duration::from_secs(3));
        let start = tokio::time::Instant::now();
        limiter.acquire(Class::Other).await;
        assert!(start.elapsed() >= Duration::from_secs(3));
    }
}
