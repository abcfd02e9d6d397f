//! The fuzz targets without libFuzzer (stable toolchain, no sanitizer): feeds
//! every seed in `corpus/*/` and then random mutations of them through
//! `decode_one`, `dispatch_one` and `protocol_one` for SECONDS (default 60). A panic aborts
//! with the input printed.
//!
//! ```text
//! cargo run --release --bin replay -- 60
//! ```

use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

fn main() {
    let secs: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let mut seeds: Vec<Vec<u8>> = Vec::new();
    for target in ["decode", "dispatch", "protocol"] {
        if let Ok(entries) = std::fs::read_dir(dir.join(target)) {
            for e in entries.flatten() {
                seeds.push(std::fs::read(e.path()).unwrap());
            }
        }
    }
    assert!(!seeds.is_empty(), "no seeds under {}", dir.display());
    let mut rng = rand::rngs::StdRng::seed_from_u64(
        std::env::var("SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1),
    );
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut n = 0u64;
    let run = |input: &[u8]| {
        let r = std::panic::catch_unwind(|| {
            flotilla_fuzz::decode_one(input);
            flotilla_fuzz::dispatch_one(input);
            flotilla_fuzz::protocol_one(input);
        });
        if r.is_err() {
            eprintln!("PANIC on input {:?}", String::from_utf8_lossy(input));
            std::process::exit(1);
        }
    };
    for s in &seeds {
        run(s);
        n += 1;
    }
    while Instant::now() < deadline {
        let mut input = seeds[rng.random_range(0..seeds.len())].clone();
        for _ in 0..rng.random_range(1..8) {
            match rng.random_range(0..5) {
                0 if !input.is_empty() => {
                    let i = rng.random_range(0..input.len());
                    input[i] = rng.random();
                }
                1 if !input.is_empty() => {
                    let i = rng.random_range(0..input.len());
                    input.remove(i);
                }
                2 => {
                    let i = rng.random_range(0..=input.len());
                    input.insert(i, b"{}[]\":,0-1e9x\\"[rng.random_range(0..14)]);
                }
                3 => {
                    // Splice a slice of another seed in.
                    let other = &seeds[rng.random_range(0..seeds.len())];
                    if !other.is_empty() {
                        let a = rng.random_range(0..other.len());
                        let b = rng.random_range(a..=other.len());
                        let at = rng.random_range(0..=input.len());
                        input.splice(at..at, other[a..b].iter().copied());
                    }
                }
                _ => {
                    if !input.is_empty() {
                        input[0] = rng.random();
                    }
                }
            }
        }
        run(&input);
        n += 1;
    }
    println!("{n} inputs, no panic");
}
