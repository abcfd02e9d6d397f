//! `testprog`: the one program inside the `flotilla-test` image.
//!
//! Usage: `/testprog <mode> [args…]`
//!
//! | mode | behaviour |
//! |---|---|
//! | `sleep` | sleeps forever; exits 0 on SIGTERM |
//! | `ignore-term` | sleeps forever and ignores SIGTERM (only SIGKILL ends it) |
//! | `exit CODE [AFTER_MS]` | exits with CODE, after AFTER_MS milliseconds (default 0) |
//! | `serve PORT [BODY]` | HTTP/1.1 server with keep-alive on 0.0.0.0:PORT; `GET /env` answers the environment, `/status/N` status N, `/slow/MS` BODY after MS milliseconds, `/burn/MS` BODY after spinning MS milliseconds of CPU time (the thread's own, so a busy host makes it slower, not cheaper), anything else BODY (default `ok`); exits 0 on SIGTERM |
//! | `fetch URL [EXPECT]` | GET `http://IP:PORT/path`, prints the body; exits 0 on a 200 whose body contains EXPECT, 1 otherwise |
//! | `fetch-env VAR [SUFFIX] [EXPECT]` | like `fetch`, with the URL taken from the environment variable VAR plus SUFFIX |
//! | `env` | prints the environment and exits 0 |
//! | `health-ok` / `health-fail` | exit 0 / 1 (for health-check commands) |
//! | `burn N` | N threads spin on the CPU forever; exits 0 on SIGTERM |
//! | `hold MIB` | allocates MIB MiB, writes to every page, sleeps forever; exits 0 on SIGTERM |
//! | `lines N [INTERVAL_MS]` | prints `out I` to stdout and `err I` to stderr for I in 1..=N, INTERVAL_MS apart (default 0), then exits 0 |
//! | `echo LINE…` | prints each argument as one line to stdout, then exits 0 |
//! | `stamp RATE SECONDS [BYTES]` | prints `SEQ MICROS x…` lines of BYTES bytes (default 100, newline included) to stdout, SEQ from 1, MICROS the wall-clock time (µs since the epoch) it was written at; RATE lines a second (0: as fast as it can), in a write per millisecond, for SECONDS seconds, then exits 0 |
//!
//! Only the standard library, and IP literals only (no resolver), so the
//! binary links statically with glibc and runs in a `FROM scratch` image.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::exit;
use std::time::Duration;

const SIGTERM: i32 = 15;
const SIG_IGN: usize = 1;

extern "C" {
    fn signal(signum: i32, handler: usize) -> usize;
    fn _exit(status: i32) -> !;
    fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
}

/// `struct timespec` on 64-bit Linux.
#[repr(C)]
struct Timespec {
    tv_sec: i64,
    tv_nsec: i64,
}

/// Linux's `CLOCK_THREAD_CPUTIME_ID`.
const CLOCK_THREAD_CPUTIME_ID: i32 = 3;

/// The CPU time this thread has used, in nanoseconds.
fn thread_cpu_ns() -> Option<u128> {
    let mut t = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    if unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut t) } != 0 {
        return None;
    }
    Some(u128::try_from(t.tv_sec).ok()? * 1_000_000_000 + u128::try_from(t.tv_nsec).ok()?)
}

/// Spins until this thread has used `ms` milliseconds of CPU: a fixed cost
/// per call whatever else the host runs (wall time if the clock fails).
fn burn_cpu(ms: u64) {
    let wall = std::time::Instant::now();
    let start = thread_cpu_ns();
    let goal = u128::from(ms) * 1_000_000;
    let mut x: u64 = 1;
    loop {
        for _ in 0..10_000 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        let used = match (start, thread_cpu_ns()) {
            (Some(a), Some(b)) => b.saturating_sub(a),
            _ => wall.elapsed().as_nanos(),
        };
        if used >= goal {
            return;
        }
    }
}

extern "C" fn exit_on_term(_signum: i32) {
    // Only async-signal-safe calls in a handler: _exit, not std::process::exit.
    unsafe { _exit(0) }
}

fn on_sigterm_exit() {
    unsafe {
        signal(SIGTERM, exit_on_term as *const () as usize);
    }
}

fn ignore_sigterm() {
    unsafe {
        signal(SIGTERM, SIG_IGN);
    }
}

fn spin() {
    let mut x: u64 = 1;
    loop {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
}

fn sleep_forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn env_text() -> String {
    let mut out = String::new();
    for (k, v) in std::env::vars() {
        out.push_str(&k);
        out.push('=');
        out.push_str(&v);
        out.push('\n');
    }
    out
}

fn serve(port: u16, body: String) -> ! {
    on_sigterm_exit();
    let listener = match TcpListener::bind(("0.0.0.0", port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("testprog: bind {port}: {e}");
            exit(2)
        }
    };
    for stream in listener.incoming().flatten() {
        let body = body.clone();
        std::thread::spawn(move || answer(stream, &body));
    }
    exit(2)
}

/// Serves requests on one connection: HTTP/1.1 keeps it open (keep-alive)
/// until the client closes it, sends `Connection: close`, or is idle for
/// 60 s; HTTP/1.0 closes after one answer unless it asked for keep-alive.
fn answer(mut stream: TcpStream, body: &str) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    let _ = stream.set_nodelay(true);
    let mut buf = [0u8; 4096];
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let head_end = loop {
            if let Some(i) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if pending.len() > 65536 {
                return;
            }
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => pending.extend_from_slice(&buf[..n]),
            }
        };
        let head = String::from_utf8_lossy(&pending[..head_end]).into_owned();
        pending.drain(..head_end);
        let mut lines = head.split("\r\n");
        let mut first = lines.next().unwrap_or("").split_whitespace();
        let _method = first.next().unwrap_or("GET");
        let path = first.next().unwrap_or("/").to_string();
        let version = first.next().unwrap_or("HTTP/1.0");
        let mut keep_alive = version == "HTTP/1.1";
        let mut content_length = 0usize;
        for line in lines {
            let Some((k, v)) = line.split_once(':') else { continue };
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_ascii_lowercase());
            match k.as_str() {
                "connection" if v == "close" => keep_alive = false,
                "connection" if v == "keep-alive" => keep_alive = true,
                "content-length" => content_length = v.parse().unwrap_or(0),
                // Chunked request bodies are not parsed: answer, then close.
                "transfer-encoding" => keep_alive = false,
                _ => {}
            }
        }
        // Skip the request body.
        while pending.len() < content_length {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => pending.extend_from_slice(&buf[..n]),
            }
        }
        pending.drain(..content_length);
        let (status, text) = route(&path, body);
        let reason = match status {
            200 => "OK",
            201 => "Created",
            204 => "No Content",
            301 => "Moved Permanently",
            302 => "Found",
            400 => "Bad Request",
            404 => "Not Found",
            500 => "Internal Server Error",
            502 => "Bad Gateway",
            503 => "Service Unavailable",
            _ => "Status",
        };
        let connection = if keep_alive { "keep-alive" } else { "close" };
        let response = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n{text}",
            text.len()
        );
        if stream.write_all(response.as_bytes()).is_err() || !keep_alive {
            return;
        }
    }
}

/// `/env`: the environment; `/status/N`: status N; `/slow/MS`: BODY after
/// MS milliseconds; `/burn/MS`: BODY after MS milliseconds of CPU time;
/// anything else: BODY.
fn route(path: &str, body: &str) -> (u16, String) {
    let path = path.split('?').next().unwrap_or(path);
    if path == "/env" {
        return (200, env_text());
    }
    if let Some(code) = path.strip_prefix("/status/") {
        return match code.parse::<u16>() {
            Ok(c) if (100..=999).contains(&c) => (c, format!("{c}\n")),
            _ => (400, "bad status\n".to_string()),
        };
    }
    if let Some(ms) = path.strip_prefix("/slow/") {
        let ms: u64 = ms.parse().unwrap_or(0).min(600_000);
        std::thread::sleep(Duration::from_millis(ms));
    }
    if let Some(ms) = path.strip_prefix("/burn/") {
        burn_cpu(ms.parse().unwrap_or(0).min(60_000));
    }
    (200, body.to_string())
}

/// GET over HTTP/1.0; returns (status, body).
fn get(url: &str) -> Result<(u16, String), String> {
    let rest = url.strip_prefix("http://").ok_or("only http:// URLs")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr: SocketAddr = authority
        .parse()
        .map_err(|e| format!("{authority}: not IP:PORT ({e})"))?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    write!(s, "GET {path} HTTP/1.0\r\nHost: {authority}\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad response: {head}"))?;
    Ok((status, body.to_string()))
}

fn fetch(url: &str, expect: &str) -> ! {
    match get(url) {
        Ok((status, body)) => {
            println!("{body}");
            if status == 200 && body.contains(expect) {
                exit(0)
            }
            eprintln!("testprog: {url}: status {status}, expected body to contain {expect:?}");
            exit(1)
        }
        Err(e) => {
            eprintln!("testprog: {url}: {e}");
            exit(1)
        }
    }
}

fn micros_now() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0)
}

/// `stamp`: numbered, time-stamped lines at a steady rate. The lines due
/// by each millisecond go out in one write (as a program with buffered
/// output writes them); Docker makes one record of each line.
fn stamp(rate: u64, duration: Duration, bytes: usize) -> ! {
    let start = std::time::Instant::now();
    let mut out = std::io::stdout().lock();
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
    let mut seq: u64 = 0;
    loop {
        let elapsed = start.elapsed();
        if elapsed >= duration {
            break;
        }
        let due = if rate == 0 {
            seq + 64
        } else {
            (elapsed.as_micros() * u128::from(rate) / 1_000_000) as u64
        };
        if due > seq {
            let now = micros_now();
            buf.clear();
            while seq < due {
                seq += 1;
                let head = format!("{seq} {now} ");
                buf.extend_from_slice(head.as_bytes());
                let pad = bytes.saturating_sub(head.len() + 1);
                buf.resize(buf.len() + pad, b'x');
                buf.push(b'\n');
            }
            if out.write_all(&buf).is_err() {
                exit(1)
            }
        }
        if rate != 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    exit(0)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str);
    match arg(0) {
        Some("sleep") => {
            on_sigterm_exit();
            sleep_forever()
        }
        Some("ignore-term") => {
            ignore_sigterm();
            sleep_forever()
        }
        Some("exit") => {
            let code = arg(1).and_then(|s| s.parse().ok()).unwrap_or(0);
            let after = arg(2).and_then(|s| s.parse().ok()).unwrap_or(0);
            on_sigterm_exit();
            std::thread::sleep(Duration::from_millis(after));
            exit(code)
        }
        Some("serve") => {
            let port = arg(1).and_then(|s| s.parse().ok()).unwrap_or(8080);
            serve(port, arg(2).unwrap_or("ok").to_string())
        }
        Some("fetch") => fetch(arg(1).unwrap_or(""), arg(2).unwrap_or("")),
        Some("fetch-env") => {
            let base = std::env::var(arg(1).unwrap_or("")).unwrap_or_default();
            fetch(&format!("{base}{}", arg(2).unwrap_or("")), arg(3).unwrap_or(""))
        }
        Some("env") => {
            print!("{}", env_text());
            exit(0)
        }
        Some("health-ok") => exit(0),
        Some("health-fail") => exit(1),
        Some("burn") => {
            on_sigterm_exit();
            let threads = arg(1).and_then(|s| s.parse().ok()).unwrap_or(1);
            for _ in 0..threads {
                std::thread::spawn(spin);
            }
            sleep_forever()
        }
        Some("hold") => {
            on_sigterm_exit();
            let mib: usize = arg(1).and_then(|s| s.parse().ok()).unwrap_or(64);
            let mut memory = vec![0u8; mib << 20];
            // Untouched pages are not resident: write one byte per page.
            for page in memory.chunks_mut(4096) {
                page[0] = 1;
            }
            std::hint::black_box(&memory);
            sleep_forever()
        }
        Some("lines") => {
            let n: u64 = arg(1).and_then(|s| s.parse().ok()).unwrap_or(10);
            let interval = arg(2).and_then(|s| s.parse().ok()).unwrap_or(0);
            on_sigterm_exit();
            let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
            for i in 1..=n {
                // One write per line: each is its own log record.
                let _ = out.write_all(format!("out {i}\n").as_bytes());
                let _ = out.flush();
                let _ = err.write_all(format!("err {i}\n").as_bytes());
                if interval > 0 {
                    std::thread::sleep(Duration::from_millis(interval));
                }
            }
            exit(0)
        }
        Some("stamp") => {
            let rate: u64 = arg(1).and_then(|s| s.parse().ok()).unwrap_or(1000);
            let seconds: u64 = arg(2).and_then(|s| s.parse().ok()).unwrap_or(10);
            let bytes: usize = arg(3).and_then(|s| s.parse().ok()).unwrap_or(100);
            on_sigterm_exit();
            stamp(rate, Duration::from_secs(seconds), bytes)
        }
        Some("echo") => {
            let mut out = std::io::stdout().lock();
            for line in &args[1..] {
                let _ = out.write_all(format!("{line}\n").as_bytes());
                let _ = out.flush();
            }
            exit(0)
        }
        other => {
            eprintln!("testprog: unknown mode {other:?}; see testimage/src/main.rs");
            exit(64)
        }
    }
}
