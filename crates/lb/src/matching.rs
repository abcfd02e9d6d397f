//! Rule conditions as ELBv2 evaluates them: pure functions over a request's
//! parts, so they are tested without sockets.
//!
//! Case rules (from the ELBv2 documentation):
//! - `path-pattern`: case-sensitive, `*` and `?` wildcards, the path only
//!   (not the query string).
//! - `host-header`: case-insensitive, wildcards; the port of the Host header
//!   is not part of the name.
//! - `http-header`: the name is case-insensitive, values are compared
//!   case-insensitively with wildcards; any of the header's values may match.
//! - `http-request-method`: case-sensitive, exact.
//! - `query-string`: keys and values case-insensitive with wildcards,
//!   compared after percent-decoding; a pair without a key matches any key.
//! - `source-ip`: CIDR blocks against the client's address (not
//!   `X-Forwarded-For`).

use std::net::IpAddr;

use flotilla_model::lb::Condition;

/// What conditions look at in a request.
pub struct RequestFacts<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// The raw query string, without `?`.
    pub query: Option<&'a str>,
    /// The headers as received (names in any case).
    pub headers: &'a [httparse::Header<'a>],
    pub source: IpAddr,
}

impl RequestFacts<'_> {
    /// The (first) Host header's name without its port.
    pub fn host(&self) -> Option<&str> {
        let host = self
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("host"))?;
        Some(strip_port(std::str::from_utf8(host.value).ok()?.trim()))
    }
}

/// Whether `name` can be a header name (an RFC 9110 token).
fn httparse_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // [v6]:port
        return match host.find(']') {
            Some(i) => &host[..=i],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// A condition compiled once per config (CIDRs parsed, patterns lowered).
#[derive(Debug, Clone)]
pub enum Matcher {
    Path(Vec<String>),
    /// Lowercased patterns.
    Host(Vec<String>),
    /// Name and lowercased patterns.
    Header(String, Vec<String>),
    Method(Vec<String>),
    /// Lowercased, decoded (key, value) patterns.
    Query(Vec<(Option<String>, String)>),
    Source(Vec<Cidr>),
    /// A condition that cannot match (an unparsable header name or CIDR):
    /// the rule is skipped rather than matching everything.
    Never,
}

impl Matcher {
    pub fn compile(c: &Condition) -> Matcher {
        match c {
            Condition::PathPattern { values } => Matcher::Path(values.clone()),
            Condition::HostHeader { values } => {
                Matcher::Host(values.iter().map(|v| v.to_ascii_lowercase()).collect())
            }
            Condition::HttpHeader { name, values } => {
                if httparse_token(name) {
                    Matcher::Header(
                        name.clone(),
                        values.iter().map(|v| v.to_ascii_lowercase()).collect(),
                    )
                } else {
                    Matcher::Never
                }
            }
            Condition::HttpRequestMethod { values } => Matcher::Method(values.clone()),
            Condition::QueryString { values } => Matcher::Query(
                values
                    .iter()
                    .map(|(k, v)| (k.as_deref().map(lower_decoded), lower_decoded(v)))
                    .collect(),
            ),
            Condition::SourceIp { values } => {
                let cidrs: Option<Vec<Cidr>> = values.iter().map(|v| Cidr::parse(v)).collect();
                match cidrs {
                    Some(c) => Matcher::Source(c),
                    None => Matcher::Never,
                }
            }
        }
    }

    pub fn matches(&self, req: &RequestFacts<'_>) -> bool {
        match self {
            Matcher::Path(patterns) => patterns
                .iter()
                .any(|p| wildcard(p.as_bytes(), req.path.as_bytes())),
            Matcher::Host(patterns) => match req.host() {
                Some(host) => {
                    let host = host.to_ascii_lowercase();
                    patterns
                        .iter()
                        .any(|p| wildcard(p.as_bytes(), host.as_bytes()))
                }
                None => false,
            },
            Matcher::Header(name, patterns) => req.headers.iter().any(|h| {
                if !h.name.eq_ignore_ascii_case(name) {
                    return false;
                }
                let v = String::from_utf8_lossy(h.value).to_ascii_lowercase();
                patterns
                    .iter()
                    .any(|p| wildcard(p.as_bytes(), v.as_bytes()))
            }),
            Matcher::Method(methods) => methods.iter().any(|m| m == req.method),
            Matcher::Query(pairs) => {
                let query: Vec<(String, String)> = req
                    .query
                    .unwrap_or("")
                    .split('&')
                    .filter(|kv| !kv.is_empty())
                    .map(|kv| match kv.split_once('=') {
                        Some((k, v)) => (lower_decoded(k), lower_decoded(v)),
                        None => (lower_decoded(kv), String::new()),
                    })
                    .collect();
                pairs.iter().any(|(pk, pv)| {
                    query.iter().any(|(k, v)| {
                        pk.as_ref()
                            .is_none_or(|pk| wildcard(pk.as_bytes(), k.as_bytes()))
                            && wildcard(pv.as_bytes(), v.as_bytes())
                    })
                })
            }
            Matcher::Source(cidrs) => cidrs.iter().any(|c| c.contains(req.source)),
            Matcher::Never => false,
        }
    }
}

fn lower_decoded(s: &str) -> String {
    let plus_as_space = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus_as_space)
        .decode_utf8_lossy()
        .to_lowercase()
}

/// `*` matches any run of bytes (also none), `?` exactly one; everything
/// else itself. Linear-time two-pointer matching with one backtrack point,
/// so a hostile pattern or input cannot make it slow.
pub fn wildcard(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

/// An IPv4 or IPv6 CIDR block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// `10.0.0.0/8`, `2001:db8::/32`; a bare address is a /32 or /128.
    pub fn parse(s: &str) -> Option<Cidr> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (s.parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Cidr {
            network: addr,
            prefix,
        })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 client on a dual-stack socket arrives as ::ffff:a.b.c.d.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.network, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => masked_eq(&n.octets(), &a.octets(), self.prefix),
            (IpAddr::V6(n), IpAddr::V6(a)) => masked_eq(&n.octets(), &a.octets(), self.prefix),
            _ => false,
        }
    }
}

fn masked_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    let rest = prefix % 8;
    if a[..full] != b[..full] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    a[full] & mask == b[full] & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts<'a>(
        headers: &'a [httparse::Header<'a>],
        path: &'a str,
        query: Option<&'a str>,
    ) -> RequestFacts<'a> {
        RequestFacts {
            method: "GET",
            path,
            query,
            headers,
            source: "10.1.2.3".parse().unwrap(),
        }
    }

    #[test]
    fn wildcards() {
        assert!(wildcard(b"/api/*", b"/api/users"));
        assert!(wildcard(b"/api/*", b"/api/"));
        assert!(!wildcard(b"/api/*", b"/api"));
        assert!(wildcard(b"*.example.com", b"www.example.com"));
        assert!(wildcard(b"/img/??.png", b"/img/ab.png"));
        assert!(!wildcard(b"/img/??.png", b"/img/abc.png"));
        assert!(wildcard(b"*", b""));
        assert!(wildcard(b"/a*b*c", b"/axxbyyc"));
        assert!(!wildcard(b"/a*b*c", b"/axxbyy"));
        assert!(wildcard(b"/exact", b"/exact"));
        assert!(!wildcard(b"/exact", b"/exactly"));
        // Pathological input stays linear-ish.
        let text = vec![b'a'; 10_000];
        assert!(!wildcard(b"*a*a*a*a*a*b", &text));
    }

    #[test]
    fn path_is_case_sensitive_host_is_not() {
        let h = [httparse::Header {
            name: "host",
            value: b"WWW.Example.COM:8080",
        }];
        let f = facts(&h, "/API/x", None);
        let path = Matcher::compile(&Condition::PathPattern {
            values: vec!["/api/*".into()],
        });
        assert!(!path.matches(&f));
        let path = Matcher::compile(&Condition::PathPattern {
            values: vec!["/API/*".into()],
        });
        assert!(path.matches(&f));
        let host = Matcher::compile(&Condition::HostHeader {
            values: vec!["*.example.com".into()],
        });
        assert!(host.matches(&f));
        let host = Matcher::compile(&Condition::HostHeader {
            values: vec!["example.com".into()],
        });
        assert!(!host.matches(&f));
    }

    #[test]
    fn headers_methods_queries() {
        let h = [httparse::Header {
            name: "X-ENV",
            value: b"Canary-1",
        }];
        let f = facts(&h, "/", Some("Version=V2&flag&name=a%20b"));
        let c = Condition::HttpHeader {
            name: "X-Env".into(),
            values: vec!["canary-*".into()],
        };
        assert!(Matcher::compile(&c).matches(&f));
        let c = Condition::HttpHeader {
            name: "X-Other".into(),
            values: vec!["*".into()],
        };
        assert!(!Matcher::compile(&c).matches(&f));
        let m = Matcher::compile(&Condition::HttpRequestMethod {
            values: vec!["GET".into()],
        });
        assert!(m.matches(&f));
        let m = Matcher::compile(&Condition::HttpRequestMethod {
            values: vec!["get".into()],
        });
        assert!(!m.matches(&f));
        let q = Matcher::compile(&Condition::QueryString {
            values: vec![(Some("version".into()), "v2".into())],
        });
        assert!(q.matches(&f));
        let q = Matcher::compile(&Condition::QueryString {
            values: vec![(None, "A B".into())],
        });
        assert!(q.matches(&f));
        let q = Matcher::compile(&Condition::QueryString {
            values: vec![(Some("version".into()), "v3".into())],
        });
        assert!(!q.matches(&f));
    }

    #[test]
    fn cidrs() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains("10.255.1.1".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.0.0.1".parse().unwrap()));
        let c = Cidr::parse("192.168.1.128/25").unwrap();
        assert!(c.contains("192.168.1.200".parse().unwrap()));
        assert!(!c.contains("192.168.1.100".parse().unwrap()));
        assert!(Cidr::parse("2001:db8::/32")
            .unwrap()
            .contains("2001:db8:1::1".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("nonsense").is_none());
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("1.2.3.4".parse().unwrap()));
    }
}
