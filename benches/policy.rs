//! `cargo bench --bench policy`: how fast the policy stage selects among
//! 100,000 realistic tags, against baselines measured in the same run.
//!
//! Baselines, because these machines are noisy and only ratios travel:
//! - semver: the obvious Rust implementation of Flux's loop on the `semver`
//!   crate (parse every tag, match the requirement, keep the highest);
//! - alphabetical + filter, numerical + extract: Flux's algorithm in Rust
//!   (filter into a map of extracted value to tag, then sort);
//! - when Go and Debian's golang-github-masterminds-semver-dev are present,
//!   Flux's own loop on Masterminds/semver, built from
//!   tests/masterminds/main.go, over the very same tags.
//!
//! Each figure is the median of interleaved runs.

use std::collections::HashMap;
use std::hint::black_box;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use hoist::api::{ImagePolicySpec, PolicyChoice, SortOrder};
use hoist::policy::CompiledPolicy;
use regex::Regex;

const TAGS: usize = 100_000;
const ROUNDS: usize = 21;
const RANGE: &str = ">=1.0.0 <20.0.0";

/// xorshift64*: deterministic tags without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Tags as busy repositories have them: releases with and without `v`,
/// prereleases, variant suffixes, sha tags, CI build tags, floating tags
/// and cosign signatures.
fn realistic_tags() -> Vec<String> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut tags = Vec::with_capacity(TAGS);
    while tags.len() < TAGS {
        let (major, minor, patch) = (rng.below(30), rng.below(50), rng.below(100));
        let v = if rng.below(3) == 0 { "v" } else { "" };
        let tag = match rng.below(100) {
            0..=49 => format!("{v}{major}.{minor}.{patch}"),
            50..=62 => format!(
                "{v}{major}.{minor}.{patch}-{}.{}",
                ["rc", "beta", "alpha"][rng.below(3) as usize],
                rng.below(12)
            ),
            63..=67 => format!(
                "{major}.{minor}.{patch}-{}",
                ["alpine", "debian", "slim"][rng.below(3) as usize]
            ),
            68..=77 => format!("sha-{:07x}", rng.below(1 << 28)),
            78..=89 => format!(
                "main-{:07x}-{}",
                rng.below(1 << 28),
                1_700_000_000 + rng.below(10_000_000)
            ),
            90..=93 => ["latest", "stable", "edge", "nightly"][rng.below(4) as usize].to_string(),
            94..=96 => format!("sha256-{:016x}.sig", rng.next()),
            _ => format!("{major}.{minor}"),
        };
        tags.push(tag);
    }
    tags
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn rate(d: Duration) -> f64 {
    TAGS as f64 / d.as_secs_f64()
}

/// Times `ours` and `baseline` alternately; returns their medians and
/// checks they agree on the answer.
fn race(name: &str, ours: &dyn Fn() -> Option<String>, baseline: &dyn Fn() -> Option<String>) {
    let (a, b) = (ours(), baseline());
    assert_eq!(a, b, "{name}: hoist and the baseline disagree");
    let (mut ours_t, mut base_t) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let start = Instant::now();
        black_box(ours());
        ours_t.push(start.elapsed());
        let start = Instant::now();
        black_box(baseline());
        base_t.push(start.elapsed());
    }
    let (o, b) = (median(ours_t), median(base_t));
    println!(
        "{name:<28} hoist {:>12.0} tags/s ({:>7.2} ms)   baseline {:>12.0} tags/s ({:>7.2} ms)   ratio {:>5.2}x   selected {}",
        rate(o),
        o.as_secs_f64() * 1e3,
        rate(b),
        b.as_secs_f64() * 1e3,
        b.as_secs_f64() / o.as_secs_f64(),
        a.unwrap_or_else(|| "-".into()),
    );
}

fn main() {
    let tags = realistic_tags();
    println!("policy selection over {TAGS} tags, median of {ROUNDS} interleaved runs\n");

    // semver: hoist vs Flux's loop on the `semver` crate.
    let semver_policy =
        CompiledPolicy::compile(&ImagePolicySpec::new("app", PolicyChoice::semver(RANGE)))
            .expect("valid policy");
    let req = semver::VersionReq::parse(">=1.0.0, <20.0.0").expect("valid requirement");
    race(
        "semver  >=1.0.0 <20.0.0",
        &|| semver_policy.select(&tags).tag.map(|t| t.0),
        &|| {
            let mut best: Option<(semver::Version, &str)> = None;
            for tag in &tags {
                let Ok(v) = semver::Version::parse(tag.strip_prefix('v').unwrap_or(tag)) else {
                    continue;
                };
                if !v.pre.is_empty() || !req.matches(&v) {
                    continue;
                }
                if best
                    .as_ref()
                    .is_none_or(|(b, _)| v.cmp_precedence(b).is_gt())
                {
                    best = Some((v, tag));
                }
            }
            best.map(|(_, t)| t.to_string())
        },
    );

    // alphabetical + filter: hoist vs filter, collect, sort.
    let pattern = r"^main-[0-9a-f]+-";
    let alpha = CompiledPolicy::compile(
        &ImagePolicySpec::new("app", PolicyChoice::alphabetical(SortOrder::Asc))
            .with_filter(pattern, None),
    )
    .expect("valid policy");
    let re = Regex::new(pattern).expect("valid pattern");
    race(
        "alphabetical + filter",
        &|| alpha.select(&tags).tag.map(|t| t.0),
        &|| {
            let mut kept: Vec<String> = tags.iter().filter(|t| re.is_match(t)).cloned().collect();
            kept.sort();
            kept.pop()
        },
    );

    // numerical + extract: hoist vs Flux's map of extracted values, sorted.
    let pattern = r"^main-[0-9a-f]+-(?P<ts>[0-9]+)$";
    let numerical = CompiledPolicy::compile(
        &ImagePolicySpec::new("app", PolicyChoice::numerical(SortOrder::Asc))
            .with_filter(pattern, Some("$ts")),
    )
    .expect("valid policy");
    let re = Regex::new(pattern).expect("valid pattern");
    race(
        "numerical + extract",
        &|| numerical.select(&tags).tag.map(|t| t.0),
        &|| {
            let mut extracted: HashMap<String, String> = HashMap::new();
            for tag in &tags {
                if let Some(caps) = re.captures(tag) {
                    let mut value = String::new();
                    caps.expand("$ts", &mut value);
                    extracted.insert(value, tag.clone());
                }
            }
            let mut values: Vec<(f64, &String)> = extracted
                .iter()
                .filter_map(|(v, t)| v.parse::<f64>().ok().map(|n| (n, t)))
                .collect();
            values.sort_by(|a, b| a.0.total_cmp(&b.0));
            values.pop().map(|(_, t)| t.clone())
        },
    );

    masterminds(&tags, &semver_policy);
}

#[path = "../tests/masterminds/oracle.rs"]
mod oracle;

/// Flux's own semver loop on Masterminds/semver, when Go and Debian's
/// package of it are installed.
fn masterminds(tags: &[String], ours: &CompiledPolicy) {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let binary = match oracle::build(dir) {
        Ok(binary) => binary,
        Err(why) => {
            println!("\nMasterminds/semver (Go): skipped; {why}");
            return;
        }
    };
    let corpus = dir.join("bench-tags.txt");
    std::fs::write(&corpus, tags.join("\n")).expect("write corpus");
    let Ok(out) = Command::new(&binary)
        .arg("time")
        .arg(&corpus)
        .arg(RANGE)
        .arg(ROUNDS.to_string())
        .output()
    else {
        println!("\nMasterminds/semver (Go): skipped; the Go benchmark did not run");
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    // The Go program prints: "<median ns> <selected tag>"
    let mut parts = text.split_whitespace();
    let (Some(Ok(go_ns)), Some(go_selected)) = (parts.next().map(str::parse::<u64>), parts.next())
    else {
        println!("\nMasterminds/semver (Go): unreadable output {text:?}");
        return;
    };
    // Time ours again right here so the two figures are from the same minute.
    let mut times = Vec::new();
    for _ in 0..ROUNDS {
        let start = Instant::now();
        black_box(ours.select(tags));
        times.push(start.elapsed());
    }
    let ours_t = median(times);
    let go_t = Duration::from_nanos(go_ns);
    println!(
        "\nsemver vs Masterminds (Go)   hoist {:>12.0} tags/s   Masterminds {:>12.0} tags/s   ratio {:>5.2}x   selected {} / {}",
        rate(ours_t),
        rate(go_t),
        go_t.as_secs_f64() / ours_t.as_secs_f64(),
        ours.select(tags)
            .tag
            .map_or_else(|| "-".to_string(), |t| t.0),
        go_selected,
    );
}
