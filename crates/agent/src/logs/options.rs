//! The awslogs log driver's options, as a container definition's
//! `logConfiguration.options` gives them, checked once into
//! [`AwsLogsOptions`]. Names, defaults and errors follow ECS's documentation
//! and Docker's awslogs driver (which ECS runs on EC2 hosts).

use std::collections::BTreeMap;
use std::time::Duration;

use regex::Regex;

/// ECS's default for `max-buffer-size` (Docker's own is 1m).
pub const DEFAULT_MAX_BUFFER_SIZE: usize = 10 << 20;

/// How long a multiline event may wait for more lines before it is sent
/// (Docker's `awslogs-force-flush-interval-seconds`, default 5 s).
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(5);

/// What happens when the agent cannot ship as fast as the container writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Nothing is dropped: the agent reads the container's output only as
    /// fast as it ships it, and the rest waits in the container's log file.
    Blocking,
    /// The agent keeps reading into a buffer of `max-buffer-size` bytes and
    /// drops the oldest events beyond it (counted and logged). ECS's
    /// default since June 2025.
    NonBlocking,
}

/// A bad option, with the rule it breaks (shown as the container's reason).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("awslogs log driver: {0}")]
pub struct OptionsError(pub String);

/// A checked awslogs configuration.
#[derive(Debug, Clone)]
pub struct AwsLogsOptions {
    /// `awslogs-group` (required).
    pub group: String,
    /// `awslogs-region`; the agent's region when absent (Docker falls back
    /// to the host's region the same way).
    pub region: Option<String>,
    /// `awslogs-stream-prefix`: streams are `PREFIX/CONTAINER/TASK-ID`.
    pub stream_prefix: Option<String>,
    /// `awslogs-stream`: an explicit stream name (Docker's option), used
    /// when there is no prefix.
    pub stream: Option<String>,
    /// `awslogs-create-group`.
    pub create_group: bool,
    pub mode: Mode,
    /// `max-buffer-size` in bytes (non-blocking mode).
    pub max_buffer_size: usize,
    /// A line matching this starts a new event; other lines join the event
    /// before them (`awslogs-datetime-format` or
    /// `awslogs-multiline-pattern`).
    pub multiline: Option<Regex>,
    /// `awslogs-force-flush-interval-seconds`.
    pub flush_interval: Duration,
    /// `awslogs-endpoint`: where to send instead of the agent's endpoint.
    pub endpoint: Option<String>,
}

/// Options Docker's awslogs driver accepts that have no effect here
/// (credentials and formats are the agent's own; `tag` templates are not
/// supported): accepted so task definitions that set them still run.
const IGNORED: &[&str] = &[
    "tag",
    "awslogs-credentials-endpoint",
    "awslogs-format",
    "awslogs-max-buffered-events",
];

fn err(message: impl Into<String>) -> OptionsError {
    OptionsError(message.into())
}

impl AwsLogsOptions {
    pub fn parse(options: &BTreeMap<String, String>) -> Result<AwsLogsOptions, OptionsError> {
        let get = |k: &str| options.get(k).map(String::as_str).filter(|v| !v.is_empty());
        for key in options.keys() {
            let known = matches!(
                key.as_str(),
                "awslogs-group"
                    | "awslogs-region"
                    | "awslogs-stream-prefix"
                    | "awslogs-stream"
                    | "awslogs-create-group"
                    | "awslogs-datetime-format"
                    | "awslogs-multiline-pattern"
                    | "awslogs-force-flush-interval-seconds"
                    | "awslogs-endpoint"
                    | "mode"
                    | "max-buffer-size"
            ) || IGNORED.contains(&key.as_str());
            if !known {
                return Err(err(format!("unknown log option '{key}'")));
            }
        }
        let group = get("awslogs-group")
            .ok_or_else(|| err("the awslogs-group option is required"))?
            .to_string();
        let create_group = match get("awslogs-create-group") {
            None => false,
            Some(v) => parse_bool(v).ok_or_else(|| {
                err(format!(
                    "awslogs-create-group must be true or false, not '{v}'"
                ))
            })?,
        };
        let mode = match get("mode") {
            None | Some("non-blocking") => Mode::NonBlocking,
            Some("blocking") => Mode::Blocking,
            Some(v) => {
                return Err(err(format!(
                    "mode must be blocking or non-blocking, not '{v}'"
                )))
            }
        };
        let max_buffer_size = match get("max-buffer-size") {
            None => DEFAULT_MAX_BUFFER_SIZE,
            Some(v) => parse_size(v).filter(|n| *n > 0).ok_or_else(|| {
                err(format!(
                    "max-buffer-size must be a size such as 4m or 512k, not '{v}'"
                ))
            })?,
        };
        let multiline = match (
            get("awslogs-datetime-format"),
            get("awslogs-multiline-pattern"),
        ) {
            (Some(_), Some(_)) => {
                return Err(err(
                    "awslogs-datetime-format and awslogs-multiline-pattern cannot both be set",
                ))
            }
            (Some(format), None) => Some(Regex::new(&strftime_to_regex(format)).map_err(|e| {
                err(format!(
                    "awslogs-datetime-format '{format}' does not make a pattern: {e}"
                ))
            })?),
            (None, Some(pattern)) => Some(Regex::new(pattern).map_err(|e| {
                err(format!(
                    "awslogs-multiline-pattern '{pattern}' is not a regular expression: {e}"
                ))
            })?),
            (None, None) => None,
        };
        let flush_interval = match get("awslogs-force-flush-interval-seconds") {
            None => DEFAULT_FLUSH_INTERVAL,
            Some(v) => v
                .parse::<u64>()
                .ok()
                .filter(|s| *s > 0)
                .map(Duration::from_secs)
                .ok_or_else(|| {
                    err(format!(
                        "awslogs-force-flush-interval-seconds must be a positive whole number, not '{v}'"
                    ))
                })?,
        };
        let endpoint = match get("awslogs-endpoint") {
            None => None,
            Some(v) if v.starts_with("http://") || v.starts_with("https://") => {
                Some(v.trim_end_matches('/').to_string())
            }
            Some(v) => {
                return Err(err(format!(
                    "awslogs-endpoint must be an http:// or https:// URL, not '{v}'"
                )))
            }
        };
        Ok(AwsLogsOptions {
            group,
            region: get("awslogs-region").map(str::to_string),
            stream_prefix: get("awslogs-stream-prefix").map(str::to_string),
            stream: get("awslogs-stream").map(str::to_string),
            create_group,
            mode,
            max_buffer_size,
            multiline,
            flush_interval,
            endpoint,
        })
    }

    /// The log stream of one container, as ECS names it:
    /// `PREFIX/CONTAINER-NAME/TASK-ID` with a prefix, else the Docker
    /// container id (or an explicit `awslogs-stream`).
    pub fn stream_name(&self, container_name: &str, task_id: &str, container_id: &str) -> String {
        match (&self.stream_prefix, &self.stream) {
            (Some(prefix), _) => format!("{prefix}/{container_name}/{task_id}"),
            (None, Some(stream)) => stream.clone(),
            (None, None) => container_id.to_string(),
        }
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

/// Docker's sizes: a number with an optional binary unit (`b`, `k`, `m`,
/// `g`, `t`, optionally followed by `b` or `ib`, any case): `1m`, `512k`,
/// `1.5MiB`, `4096`.
pub fn parse_size(s: &str) -> Option<usize> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let number: f64 = number.parse().ok()?;
    let unit = unit.trim().to_ascii_lowercase();
    let unit = unit
        .strip_suffix("ib")
        .or_else(|| unit.strip_suffix('b').filter(|u| !u.is_empty()))
        .unwrap_or(&unit);
    let scale: f64 = match unit {
        "" | "b" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = number * scale;
    (bytes.is_finite() && bytes < usize::MAX as f64).then_some(bytes as usize)
}

/// An `awslogs-datetime-format` (strftime codes inside a regular
/// expression, as Docker reads it) turned into the regular expression a
/// line must match to start an event. Like Docker, the pattern may match
/// anywhere in the line and an unknown `%x` code matches nothing in
/// particular (it is dropped); `%%` is a percent sign.
pub fn strftime_to_regex(format: &str) -> String {
    const DAYS: &str = "(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)";
    const WEEKDAYS: &str = "(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)";
    const MONTHS: &str = "(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)";
    const FULL_MONTHS: &str =
        "(?:January|February|March|April|May|June|July|August|September|October|November|December)";
    let mut out = String::with_capacity(format.len() * 2);
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let code = chars.next();
        out.push_str(match code {
            Some('a') => DAYS,
            Some('A') => WEEKDAYS,
            Some('b') => MONTHS,
            Some('B') => FULL_MONTHS,
            Some('d') => "(?:0[1-9]|[12][0-9]|3[01])",
            Some('m') => "(?:0[1-9]|1[0-2])",
            Some('Y') => r"\d{4}",
            Some('y') => r"\d{2}",
            Some('H') => "(?:[01][0-9]|2[0-3])",
            Some('I') => "(?:0[0-9]|1[0-2])",
            Some('p') => "(?:AM|PM)",
            Some('M') => "[0-5][0-9]",
            Some('S') => "[0-5][0-9]",
            Some('f') => r"\d{6}",
            Some('L') => r"\.\d{3}",
            Some('z') => r"[+-]\d{4}",
            Some('Z') => "[A-Z]{1,4}T",
            Some('j') => "(?:00[1-9]|0[1-9][0-9]|[12][0-9][0-9]|3[0-5][0-9]|36[0-6])",
            Some('%') => "%",
            _ => "",
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn reads_every_option() {
        let o = AwsLogsOptions::parse(&opts(&[
            ("awslogs-group", "/ecs/web"),
            ("awslogs-region", "eu-west-1"),
            ("awslogs-stream-prefix", "web"),
            ("awslogs-create-group", "true"),
            ("mode", "non-blocking"),
            ("max-buffer-size", "4m"),
            ("awslogs-multiline-pattern", "^INFO"),
            ("awslogs-force-flush-interval-seconds", "2"),
            ("awslogs-endpoint", "http://127.0.0.1:4566/"),
        ]))
        .unwrap();
        assert_eq!(o.group, "/ecs/web");
        assert_eq!(o.region.as_deref(), Some("eu-west-1"));
        assert!(o.create_group);
        assert_eq!(o.mode, Mode::NonBlocking);
        assert_eq!(o.max_buffer_size, 4 << 20);
        assert!(o.multiline.as_ref().unwrap().is_match("INFO start"));
        assert_eq!(o.flush_interval, Duration::from_secs(2));
        assert_eq!(o.endpoint.as_deref(), Some("http://127.0.0.1:4566"));
        assert_eq!(o.stream_name("app", "0123abcd", "f00d"), "web/app/0123abcd");
    }

    #[test]
    fn defaults_follow_ecs() {
        let o = AwsLogsOptions::parse(&opts(&[("awslogs-group", "g")])).unwrap();
        assert_eq!(o.mode, Mode::NonBlocking);
        assert_eq!(o.max_buffer_size, 10 << 20);
        assert!(!o.create_group);
        assert!(o.multiline.is_none());
        assert_eq!(o.flush_interval, DEFAULT_FLUSH_INTERVAL);
        // Without a prefix the stream is named after the container id.
        assert_eq!(o.stream_name("app", "0123abcd", "f00d"), "f00d");
        let o = AwsLogsOptions::parse(&opts(&[("awslogs-group", "g"), ("awslogs-stream", "s")]))
            .unwrap();
        assert_eq!(o.stream_name("app", "0123abcd", "f00d"), "s");
    }

    #[test]
    fn bad_options_name_the_option() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[], "awslogs-group option is required"),
            (
                &[("awslogs-group", "g"), ("mode", "fast")],
                "mode must be blocking or non-blocking",
            ),
            (
                &[("awslogs-group", "g"), ("max-buffer-size", "lots")],
                "max-buffer-size",
            ),
            (
                &[("awslogs-group", "g"), ("awslogs-create-group", "yes")],
                "awslogs-create-group",
            ),
            (
                &[
                    ("awslogs-group", "g"),
                    ("awslogs-datetime-format", "%Y"),
                    ("awslogs-multiline-pattern", "x"),
                ],
                "cannot both be set",
            ),
            (
                &[("awslogs-group", "g"), ("awslogs-multiline-pattern", "(")],
                "awslogs-multiline-pattern",
            ),
            (
                &[("awslogs-group", "g"), ("awslogs-endpoint", "ftp://x")],
                "awslogs-endpoint",
            ),
            (
                &[("awslogs-group", "g"), ("awslogs-grup", "x")],
                "unknown log option 'awslogs-grup'",
            ),
        ];
        for (pairs, want) in cases {
            let e = AwsLogsOptions::parse(&opts(pairs)).unwrap_err();
            assert!(e.to_string().contains(want), "{pairs:?}: {e}");
        }
        // Docker's options without meaning here are accepted.
        AwsLogsOptions::parse(&opts(&[("awslogs-group", "g"), ("tag", "{{.Name}}")])).unwrap();
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1m"), Some(1 << 20));
        assert_eq!(parse_size("512k"), Some(512 << 10));
        assert_eq!(parse_size("1.5MiB"), Some(3 << 19));
        assert_eq!(parse_size("2MB"), Some(2 << 20));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("1x"), None);
        assert_eq!(parse_size(""), None);
    }

    #[test]
    fn datetime_formats_become_patterns() {
        let re = Regex::new(&strftime_to_regex(r"\[%b %d, %Y %H:%M:%S\]")).unwrap();
        assert!(re.is_match("[May 01, 2017 19:00:01] A message was logged"));
        assert!(!re.is_match("    at com.example.Main(Main.java:10)"));
        let re = Regex::new(&strftime_to_regex("%Y-%m-%dT%H:%M:%S%z")).unwrap();
        assert!(re.is_match("2024-02-29T23:59:59+0100 started"));
        assert!(!re.is_match("2024-13-29T23:59:59+0100 started"));
        assert_eq!(strftime_to_regex("100%% %Q"), "100% ");
    }
}
