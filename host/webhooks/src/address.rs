//! Where a webhook may point. A tenant chooses the URL, so it is an attacker's choice: by default
//! deliveries reach public addresses only — never this host, its private network, or the cloud
//! metadata service (link-local) — checked on every address a name resolves to at delivery time
//! (so a name that later resolves elsewhere is caught too), not only when the webhook is created.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// The longest webhook URL taken.
pub const MAX_URL_BYTES: usize = 2048;

/// Which addresses deliveries may reach.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    /// Also loopback and private networks (`serve --allow-private-webhooks`: a receiver on the
    /// same machine or network). Link-local, multicast and unspecified addresses are refused
    /// either way.
    pub allow_private: bool,
}

impl AddressPolicy {
    /// Why `ip` may not be reached, if it may not.
    pub fn check(&self, ip: IpAddr) -> Result<(), String> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        let never = match ip {
            IpAddr::V4(v4) if v4.is_link_local() => {
                Some("link-local (e.g. a cloud metadata service)")
            }
            IpAddr::V4(v4) if v4.is_unspecified() || v4.octets()[0] == 0 => Some("unspecified"),
            IpAddr::V4(v4) if v4.is_multicast() || v4.is_broadcast() => {
                Some("multicast or broadcast")
            }
            IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80 => Some("link-local"),
            IpAddr::V6(v6) if v6.is_unspecified() => Some("unspecified"),
            IpAddr::V6(v6) if v6.is_multicast() => Some("multicast"),
            _ => None,
        };
        if let Some(kind) = never {
            return Err(format!(
                "{ip} is a {kind} address: webhooks cannot reach it"
            ));
        }
        if !self.allow_private {
            let private = match ip {
                IpAddr::V4(v4) if v4.is_loopback() => Some("loopback"),
                IpAddr::V4(v4) if v4.is_private() => Some("private"),
                IpAddr::V4(v4) if is_shared(v4) => Some("shared (carrier-grade NAT)"),
                IpAddr::V6(v6) if v6.is_loopback() => Some("loopback"),
                IpAddr::V6(v6) if v6.segments()[0] & 0xfe00 == 0xfc00 => {
                    Some("unique local (private)")
                }
                _ => None,
            };
            if let Some(kind) = private {
                return Err(format!(
                    "{ip} is a {kind} address: webhooks reach public addresses only \
                     (serve --allow-private-webhooks allows this host and private networks)"
                ));
            }
        }
        Ok(())
    }

    /// Checks a webhook URL as given: http or https, a host, no user name or password, at most
    /// [`MAX_URL_BYTES`]; an address given as the host must be one this policy allows (a name is
    /// checked when it is resolved, at each delivery).
    pub fn check_url(&self, url: &str) -> Result<url::Url, String> {
        if url.len() > MAX_URL_BYTES {
            return Err(format!("a webhook URL is at most {MAX_URL_BYTES} bytes"));
        }
        let parsed = url::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err("a webhook URL is http:// or https://".into());
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err("a webhook URL carries no user name or password: the signature authenticates deliveries".into());
        }
        match parsed.host() {
            None => return Err("a webhook URL needs a host".into()),
            Some(url::Host::Ipv4(v4)) => self.check(IpAddr::V4(v4))?,
            Some(url::Host::Ipv6(v6)) => self.check(IpAddr::V6(v6))?,
            Some(url::Host::Domain(_)) => {}
        }
        Ok(parsed)
    }
}

/// 100.64.0.0/10.
fn is_shared(v4: Ipv4Addr) -> bool {
    let [a, b, ..] = v4.octets();
    a == 100 && (64..128).contains(&b)
}

/// Resolves names through the system resolver, keeping only addresses the policy allows; a name
/// with none left fails with the reason.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CheckedResolver(pub AddressPolicy);

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let (policy, host) = (self.0, name.as_str().to_string());
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| match policy.check(a.ip()) {
                    Ok(()) => true,
                    Err(why) => {
                        refused.get_or_insert(why);
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                let why = refused.unwrap_or_else(|| "no address".into());
                return Err(format!("{host}: {why}").into());
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_unless_private_ones_are_allowed() {
        let public = AddressPolicy::default();
        let private = AddressPolicy {
            allow_private: true,
        };
        for ip in ["93.184.216.34", "2606:2800:220:1::1"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(
                public.check(ip).is_ok() && private.check(ip).is_ok(),
                "{ip}"
            );
        }
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let error = public.check(ip).unwrap_err();
            assert!(error.contains("--allow-private-webhooks"), "{ip}: {error}");
            assert!(private.check(ip).is_ok(), "{ip}");
        }
        for ip in [
            "169.254.169.254",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "fe80::1",
            "::",
            "ff02::1",
            "::ffff:169.254.169.254",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(private.check(ip).is_err(), "{ip} is never reachable");
        }
    }

    #[test]
    fn urls_are_checked_before_they_are_stored() {
        let public = AddressPolicy::default();
        assert!(public.check_url("https://hooks.example.com/in?x=1").is_ok());
        for (url, says) in [
            ("ftp://example.com/", "http"),
            ("file:///etc/passwd", "http"),
            ("https://user:pw@example.com/", "user name"),
            ("http://127.0.0.1:9/", "loopback"),
            ("http://[::1]/", "loopback"),
            ("http://169.254.169.254/latest/meta-data", "link-local"),
            ("not a url", "not a URL"),
        ] {
            let error = public.check_url(url).unwrap_err();
            assert!(error.contains(says), "{url}: {error}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_BYTES));
        assert!(public.check_url(&long).unwrap_err().contains("at most"));
    }

    #[tokio::test]
    async fn a_name_is_checked_on_every_address_it_resolves_to() {
        let refused = CheckedResolver(AddressPolicy::default())
            .resolve("localhost".parse().unwrap())
            .await
            .err()
            .expect("localhost is loopback");
        assert!(refused.to_string().contains("loopback"), "{refused}");
        let allowed: Vec<SocketAddr> = CheckedResolver(AddressPolicy {
            allow_private: true,
        })
        .resolve("localhost".parse().unwrap())
        .await
        .unwrap()
        .collect();
        assert!(allowed.iter().all(|a| a.ip().is_loopback()) && !allowed.is_empty());
    }
}
