//! What one client may ask of the HTTP server: the limits (connections, header time and size,
//! URI and body size) and the rate limiters (requests per API key, failed authentications per
//! client address).
//!
//! The rate limiters are token buckets in memory, per API host: bounded in entries (idle ones
//! are dropped first), so a flood of addresses cannot grow them without end. They are not shared
//! between hosts; each host enforces the limit on what reaches it.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::http::request::Parts;

use crate::ApiError;

/// The HTTP limits, with the defaults `serve` uses.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpLimits {
    /// A client must send a request's whole header section within this time (also the longest a
    /// keep-alive connection may sit idle between requests).
    pub header_read_timeout: Duration,
    /// Open connections at most, WebSockets included; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// The request line and headers together, at most (431 beyond).
    pub max_header_bytes: usize,
    /// The request target (path and query), at most (414 beyond).
    pub max_uri_bytes: usize,
    /// A request body, at most (413 beyond).
    pub max_body_bytes: usize,
    /// Requests per minute one API key may make (429 with `Retry-After` beyond; 0: no limit).
    pub api_key_requests_per_minute: u32,
    /// Failed authentications (a wrong API key or playback token) per minute from one client
    /// address before its authenticated requests are answered 429 for a while (0: no limit).
    pub auth_failures_per_minute: u32,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 1024,
            max_header_bytes: 64 * 1024,
            max_uri_bytes: 8 * 1024,
            max_body_bytes: 1024 * 1024,
            api_key_requests_per_minute: 1200,
            auth_failures_per_minute: 10,
        }
    }
}

/// The smallest header budget hyper accepts (its read buffer).
pub const MIN_HEADER_BYTES: usize = 8 * 1024;

impl HttpLimits {
    /// Checks the values; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.header_read_timeout.is_zero() {
            return Err("header_read_timeout_seconds must be positive".into());
        }
        if self.max_connections == 0 {
            return Err("max_connections must be at least 1".into());
        }
        if self.max_header_bytes < MIN_HEADER_BYTES {
            return Err(format!(
                "max_header_bytes must be at least {MIN_HEADER_BYTES}"
            ));
        }
        if !(256..=self.max_header_bytes).contains(&self.max_uri_bytes) {
            return Err("max_uri_bytes must be between 256 and max_header_bytes".into());
        }
        if self.max_body_bytes < 1024 {
            return Err("max_body_bytes must be at least 1024".into());
        }
        Ok(())
    }
}

/// The body limit in force, in a request's extensions (for the error message).
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// The limits and the rate limiters of one API host.
#[derive(Debug, Clone)]
pub struct Limits {
    pub http: HttpLimits,
    api_keys: Arc<RateLimiter<String>>,
    auth_failures: Arc<RateLimiter<IpAddr>>,
}

impl Default for Limits {
    fn default() -> Self {
        Self::new(HttpLimits::default())
    }
}

/// Tracked keys and addresses per limiter, at most.
const MAX_TRACKED: usize = 100_000;

impl Limits {
    pub fn new(http: HttpLimits) -> Self {
        Self {
            api_keys: Arc::new(RateLimiter::per_minute(
                http.api_key_requests_per_minute,
                MAX_TRACKED,
            )),
            auth_failures: Arc::new(RateLimiter::per_minute(
                http.auth_failures_per_minute,
                MAX_TRACKED,
            )),
            http,
        }
    }

    /// Refuses a client address that failed to authenticate too often lately. Checked before a
    /// credential is, so that guessing gets no answer about the guesses.
    pub fn check_address(&self, parts: &Parts) -> Result<(), ApiError> {
        match self.auth_failures.blocked_for(&client_address(parts)) {
            Some(wait) => Err(ApiError::RateLimited(retry_after(wait))),
            None => Ok(()),
        }
    }

    /// Counts a failed authentication against the client's address.
    pub fn auth_failed(&self, parts: &Parts) {
        let _ = self.auth_failures.take(client_address(parts));
    }

    /// Counts a request against an API key (by key id).
    pub fn check_key(&self, key_id: &str) -> Result<(), ApiError> {
        self.api_keys
            .take(key_id.to_string())
            .map_err(|wait| ApiError::RateLimited(retry_after(wait)))
    }
}

fn retry_after(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

/// The client's address as the connection reports it; an IPv6 client by its /64, which one
/// machine typically has whole. Without connection info (a router driven directly in tests),
/// the unspecified address.
pub fn client_address(parts: &Parts) -> IpAddr {
    match parts.extensions.get::<ConnectInfo<SocketAddr>>() {
        Some(ConnectInfo(addr)) => match addr.ip() {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let s = v6.segments();
                    IpAddr::V6([s[0], s[1], s[2], s[3], 0, 0, 0, 0].into())
                }
            },
            v4 => v4,
        },
        None => IpAddr::from([0, 0, 0, 0]),
    }
}

/// Token buckets by key: `capacity` tokens, refilled at `capacity` per minute.
#[derive(Debug)]
pub struct RateLimiter<K> {
    capacity: f64,
    per_second: f64,
    max_entries: usize,
    buckets: Mutex<HashMap<K, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// `per_minute` = 0 turns the limiter off.
    pub fn per_minute(per_minute: u32, max_entries: usize) -> Self {
        Self {
            capacity: per_minute as f64,
            per_second: per_minute as f64 / 60.0,
            max_entries: max_entries.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn enabled(&self) -> bool {
        self.capacity > 0.0
    }

    fn refilled(&self, bucket: Bucket, now: Instant) -> Bucket {
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        Bucket {
            tokens: (bucket.tokens + elapsed * self.per_second).min(self.capacity),
            at: now,
        }
    }

    fn wait_for_one(&self, tokens: f64) -> Duration {
        Duration::from_secs_f64(((1.0 - tokens) / self.per_second).max(0.0))
    }

    /// Takes a token for `key`; when there is none, how long until there is.
    pub fn take(&self, key: K) -> Result<(), Duration> {
        self.take_at(key, Instant::now())
    }

    fn take_at(&self, key: K, now: Instant) -> Result<(), Duration> {
        if !self.enabled() {
            return Ok(());
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if !buckets.contains_key(&key) && buckets.len() >= self.max_entries {
            // Full buckets are idle clients: forget them first.
            buckets.retain(|_, b| self.refilled(*b, now).tokens < self.capacity);
            if buckets.len() >= self.max_entries {
                // Still full of active clients: forget the one seen longest ago.
                if let Some(oldest) = buckets
                    .iter()
                    .min_by_key(|(_, b)| b.at)
                    .map(|(k, _)| k.clone())
                {
                    buckets.remove(&oldest);
                }
            }
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: self.capacity,
            at: now,
        });
        let mut b = self.refilled(*bucket, now);
        let result = if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(self.wait_for_one(b.tokens))
        };
        *bucket = b;
        result
    }

    /// When `key` has no token left: how long until it has one. Takes nothing.
    pub fn blocked_for(&self, key: &K) -> Option<Duration> {
        self.blocked_for_at(key, Instant::now())
    }

    fn blocked_for_at(&self, key: &K, now: Instant) -> Option<Duration> {
        if !self.enabled() {
            return None;
        }
        let buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let b = self.refilled(*buckets.get(key)?, now);
        (b.tokens < 1.0).then(|| self.wait_for_one(b.tokens))
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.buckets.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_empties_then_refills_at_the_rate() {
        let limiter = RateLimiter::per_minute(10, 100);
        let t0 = Instant::now();
        for _ in 0..10 {
            assert!(limiter.take_at("a", t0).is_ok());
        }
        let wait = limiter.take_at("a", t0).unwrap_err();
        assert!((5.9..=6.1).contains(&wait.as_secs_f64()), "{wait:?}");
        assert!(limiter.blocked_for_at(&"a", t0).is_some());
        assert!(
            limiter.take_at("b", t0).is_ok(),
            "other keys are not affected"
        );
        let later = t0 + Duration::from_secs(6);
        assert!(limiter.blocked_for_at(&"a", later).is_none());
        assert!(limiter.take_at("a", later).is_ok());
        assert!(limiter.take_at("a", later).is_err());
    }

    #[test]
    fn entries_are_bounded() {
        let limiter = RateLimiter::per_minute(2, 3);
        let t0 = Instant::now();
        for ip in 0..1000u32 {
            let _ = limiter.take_at(ip, t0);
            let _ = limiter.take_at(ip, t0);
        }
        assert!(limiter.tracked() <= 3);
    }

    #[test]
    fn zero_means_no_limit() {
        let limiter = RateLimiter::per_minute(0, 3);
        for _ in 0..100 {
            assert!(limiter.take("k").is_ok());
        }
        assert!(limiter.blocked_for(&"k").is_none());
    }

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        assert!(HttpLimits::default().validate().is_ok());
        let bad = HttpLimits {
            max_header_bytes: 100,
            ..HttpLimits::default()
        };
        assert!(bad.validate().unwrap_err().contains("max_header_bytes"));
        let bad = HttpLimits {
            max_connections: 0,
            ..HttpLimits::default()
        };
        assert!(bad.validate().unwrap_err().contains("max_connections"));
    }
}
