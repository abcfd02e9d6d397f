//! Health checks with ELBv2's semantics: one probe per interval per target,
//! a state machine over consecutive results, and ELBv2's reason codes.
//!
//! - A new target is `initial` ("Elb.InitialHealthChecking") until its first
//!   passing check makes it `healthy`, or `unhealthy_threshold` consecutive
//!   failures make it `unhealthy`.
//! - A healthy target turns unhealthy after `unhealthy_threshold`
//!   consecutive failures; an unhealthy one healthy after
//!   `healthy_threshold` consecutive passes.
//! - HTTP checks send `GET path` on a fresh connection (as ELBv2's checker
//!   does, with `User-Agent: ELB-HealthChecker/2.0`) and compare the status
//!   with the matcher; TCP checks pass when the connection opens.

use std::net::SocketAddr;
use std::time::Duration;

use flotilla_model::lb::{HealthCheckConfig, ObservedHealth, Protocol};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::balance::CodeMatcher;

/// What one probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    /// The target answered with a status the matcher does not accept.
    CodeMismatch(u16),
    /// No complete answer within the check's timeout.
    Timeout,
    /// The connection was refused or broke, or the answer was not HTTP.
    Failed,
}

/// A target's health with ELBv2's reason and description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub health: ObservedHealth,
    pub reason: Option<&'static str>,
    pub description: Option<String>,
}

impl Verdict {
    pub fn initial() -> Verdict {
        Verdict {
            health: ObservedHealth::Initial,
            reason: Some("Elb.InitialHealthChecking"),
            description: Some("Initial health checks in progress".into()),
        }
    }

    /// A verdict reported before (its reason one of ELBv2's codes).
    pub fn known(
        health: ObservedHealth,
        reason: Option<&str>,
        description: Option<String>,
    ) -> Verdict {
        const REASONS: [&str; 4] = [
            "Elb.InitialHealthChecking",
            "Target.ResponseCodeMismatch",
            "Target.Timeout",
            "Target.FailedHealthChecks",
        ];
        Verdict {
            health,
            reason: reason.and_then(|r| REASONS.iter().find(|k| **k == r).copied()),
            description,
        }
    }

    fn healthy() -> Verdict {
        Verdict {
            health: ObservedHealth::Healthy,
            reason: None,
            description: None,
        }
    }

    fn unhealthy(outcome: Outcome) -> Verdict {
        let (reason, description) = match outcome {
            Outcome::CodeMismatch(code) => (
                "Target.ResponseCodeMismatch",
                format!("Health checks failed with these codes: [{code}]"),
            ),
            Outcome::Timeout => ("Target.Timeout", "Request timed out".to_string()),
            Outcome::Failed | Outcome::Pass => (
                "Target.FailedHealthChecks",
                "Health checks failed".to_string(),
            ),
        };
        Verdict {
            health: ObservedHealth::Unhealthy,
            reason: Some(reason),
            description: Some(description),
        }
    }
}

/// Consecutive results of one target's checks → its verdict.
#[derive(Debug, Clone)]
pub struct Tracker {
    verdict: Verdict,
    passes: u32,
    failures: u32,
}

impl Default for Tracker {
    fn default() -> Self {
        Tracker {
            verdict: Verdict::initial(),
            passes: 0,
            failures: 0,
        }
    }
}

impl Tracker {
    /// A tracker resuming from a known health (after a settings change).
    pub fn resume(verdict: Verdict) -> Tracker {
        Tracker {
            verdict,
            passes: 0,
            failures: 0,
        }
    }

    pub fn verdict(&self) -> &Verdict {
        &self.verdict
    }

    /// Records one probe; returns the new verdict when it changed (health,
    /// or the reason of an unhealthy target).
    pub fn observe(
        &mut self,
        outcome: Outcome,
        healthy_threshold: u32,
        unhealthy_threshold: u32,
    ) -> Option<Verdict> {
        let next = if outcome == Outcome::Pass {
            self.passes += 1;
            self.failures = 0;
            match self.verdict.health {
                ObservedHealth::Initial => Some(Verdict::healthy()),
                ObservedHealth::Unhealthy if self.passes >= healthy_threshold.max(1) => {
                    Some(Verdict::healthy())
                }
                _ => None,
            }
        } else {
            self.failures += 1;
            self.passes = 0;
            match self.verdict.health {
                ObservedHealth::Unhealthy => Some(Verdict::unhealthy(outcome)),
                _ if self.failures >= unhealthy_threshold.max(1) => {
                    Some(Verdict::unhealthy(outcome))
                }
                _ => None,
            }
        };
        match next {
            Some(v) if v != self.verdict => {
                self.verdict = v.clone();
                Some(v)
            }
            _ => None,
        }
    }
}

/// Largest answer head read from a target before giving up on finding its
/// status line.
const MAX_STATUS_LINE: usize = 8 * 1024;

/// Runs one probe of `target` (already the health-check port).
pub async fn probe(target: SocketAddr, hc: &HealthCheckConfig, matcher: &CodeMatcher) -> Outcome {
    let timeout = Duration::from_secs(u64::from(hc.timeout_secs.max(1)));
    let work = async {
        let mut stream = match TcpStream::connect(target).await {
            Ok(s) => s,
            Err(_) => return Outcome::Failed,
        };
        if hc.protocol == Protocol::Tcp {
            return Outcome::Pass;
        }
        let path = if hc.path.starts_with('/') {
            hc.path.as_str()
        } else {
            "/"
        };
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {target}\r\nUser-Agent: ELB-HealthChecker/2.0\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
        if stream.write_all(request.as_bytes()).await.is_err() {
            return Outcome::Failed;
        }
        let mut buf = Vec::with_capacity(256);
        let mut chunk = [0u8; 1024];
        loop {
            if let Some(end) = buf.windows(2).position(|w| w == b"\r\n") {
                return match status_code(&buf[..end]) {
                    Some(code) if matcher.matches(code) => Outcome::Pass,
                    Some(code) => Outcome::CodeMismatch(code),
                    None => Outcome::Failed,
                };
            }
            if buf.len() > MAX_STATUS_LINE {
                return Outcome::Failed;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return Outcome::Failed,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or(Outcome::Timeout)
}

/// `HTTP/1.1 200 OK` → 200.
fn status_code(line: &[u8]) -> Option<u16> {
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split(' ');
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    let code = parts.next()?;
    (code.len() == 3).then_some(())?;
    code.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_turns_healthy_after_one_pass() {
        let mut t = Tracker::default();
        assert_eq!(t.verdict().health, ObservedHealth::Initial);
        let v = t.observe(Outcome::Pass, 5, 2).unwrap();
        assert_eq!(v.health, ObservedHealth::Healthy);
        assert_eq!(t.observe(Outcome::Pass, 5, 2), None);
    }

    #[test]
    fn thresholds_both_ways_with_reasons() {
        let mut t = Tracker::default();
        t.observe(Outcome::Pass, 3, 2);
        assert_eq!(t.observe(Outcome::CodeMismatch(500), 3, 2), None);
        let v = t.observe(Outcome::CodeMismatch(500), 3, 2).unwrap();
        assert_eq!(v.health, ObservedHealth::Unhealthy);
        assert_eq!(v.reason, Some("Target.ResponseCodeMismatch"));
        assert_eq!(
            v.description.as_deref(),
            Some("Health checks failed with these codes: [500]")
        );
        // The reason follows the latest failure.
        let v = t.observe(Outcome::Timeout, 3, 2).unwrap();
        assert_eq!(v.reason, Some("Target.Timeout"));
        assert_eq!(t.observe(Outcome::Timeout, 3, 2), None);
        // Back: three passes in a row, a failure in between restarts the count.
        assert_eq!(t.observe(Outcome::Pass, 3, 2), None);
        assert!(t.observe(Outcome::Failed, 3, 2).is_some());
        assert_eq!(t.observe(Outcome::Pass, 3, 2), None);
        assert_eq!(t.observe(Outcome::Pass, 3, 2), None);
        assert_eq!(
            t.observe(Outcome::Pass, 3, 2).unwrap().health,
            ObservedHealth::Healthy
        );
    }

    #[test]
    fn initial_turns_unhealthy_after_threshold() {
        let mut t = Tracker::default();
        assert_eq!(t.observe(Outcome::Failed, 5, 2), None);
        let v = t.observe(Outcome::Failed, 5, 2).unwrap();
        assert_eq!(v.reason, Some("Target.FailedHealthChecks"));
    }

    #[test]
    fn status_lines() {
        assert_eq!(status_code(b"HTTP/1.1 200 OK"), Some(200));
        assert_eq!(status_code(b"HTTP/1.0 503"), Some(503));
        assert_eq!(status_code(b"SSH-2.0-OpenSSH"), None);
        assert_eq!(status_code(b"HTTP/1.1 2000 X"), None);
    }
}
