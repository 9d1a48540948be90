//! Differential test: hoist's semver policy against Flux's own loop on
//! Masterminds/semver at the version Flux's image-reflector-controller pins
//! (v3.5, tests/masterminds/go.mod), over thousands of generated ranges and
//! tag lists.
//!
//! Nothing is generated around any more: prerelease comparators in groups
//! of any size, groups of `!=` alone and hyphen ranges joined to the next
//! group without a space are all compared. (Against Debian's v3.2, which
//! this test used before, the same cases differ 253 times in 10,000: v3.2
//! lets a prerelease comparator admit prereleases only for itself, admits
//! them for `!=`, and runs a rewritten hyphen range into what follows.)
//!
//! Leading zeros, where hoist deliberately differs from Flux, are not
//! generated.

use std::io::Write;
use std::process::{Command, Stdio};

use hoist::api::{ImagePolicySpec, PolicyChoice};

#[path = "../masterminds/oracle.rs"]
mod oracle;

const CASES: usize = 10000;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

fn part(rng: &mut Rng) -> String {
    match rng.below(10) {
        0 => rng.pick(&["x", "X", "*"]).to_string(),
        _ => rng.below(4).to_string(),
    }
}

/// A version as ranges write it: 1 to 3 parts, wildcards, a `v`, and
/// (when allowed) a prerelease or build metadata.
fn range_version(rng: &mut Rng, prerelease: bool) -> String {
    let mut v = String::new();
    if rng.below(8) == 0 {
        v.push('v');
    }
    v.push_str(&part(rng));
    for _ in 0..rng.below(3) {
        v.push('.');
        v.push_str(&part(rng));
    }
    if prerelease && rng.below(3) == 0 {
        v.push('-');
        v.push_str(rng.pick(&["0", "rc.1", "alpha", "beta.2"]));
    }
    if rng.below(20) == 0 {
        v.push_str("+build.1");
    }
    v
}

fn comparator(rng: &mut Rng, prerelease: bool) -> String {
    let op = rng.pick(&[
        "", "", "=", "!=", ">", "<", ">=", "=>", "<=", "=<", "~", "~>", "^",
    ]);
    let space = if rng.below(4) == 0 { " " } else { "" };
    format!("{op}{space}{}", range_version(rng, prerelease))
}

fn group(rng: &mut Rng) -> String {
    if rng.below(8) == 0 {
        let (lo, hi) = (range_version(rng, false), range_version(rng, false));
        return format!("{lo} - {hi}");
    }
    let count = 1 + rng.below(3);
    let mut parts = Vec::new();
    for _ in 0..count {
        parts.push(comparator(rng, true));
    }
    let joiner = rng.pick(&[" ", ", ", ",", "  "]);
    parts.join(joiner)
}

fn range(rng: &mut Rng) -> String {
    if rng.below(25) == 0 {
        // Text that is not a range, to compare rejections too.
        return rng
            .pick(&[
                ">>1", "1.2.3.4", "abc", "1 -", "=>=1", "~^1", "1.2.3-", ">=1 <", "1 ||| 2",
            ])
            .to_string();
    }
    let mut groups = vec![group(rng)];
    for _ in 0..rng.below(2) {
        groups.push(group(rng));
    }
    groups.join(rng.pick(&[" || ", "||"]))
}

fn tag(rng: &mut Rng) -> String {
    match rng.below(12) {
        0 => rng
            .pick(&["latest", "1.2", "1.0.0.1", "V1.0.0", "v1", "1.0.0p"])
            .to_string(),
        _ => {
            let mut t = String::new();
            if rng.below(4) == 0 {
                t.push('v');
            }
            t.push_str(&format!(
                "{}.{}.{}",
                rng.below(4),
                rng.below(4),
                rng.below(4)
            ));
            if rng.below(4) == 0 {
                t.push('-');
                t.push_str(rng.pick(&["0", "rc.1", "rc.2", "alpha", "beta.2", "beta.11"]));
            }
            if rng.below(10) == 0 {
                t.push_str("+b1");
            }
            t
        }
    }
}

/// hoist's answer in the oracle's notation.
fn ours(range: &str, tags: &[String]) -> String {
    let spec = ImagePolicySpec::new("app", PolicyChoice::semver(range));
    match hoist::policy::select(&spec, tags) {
        Err(_) => "!".to_string(),
        Ok(selection) => selection.tag.map_or_else(|| "-".to_string(), |t| t.0),
    }
}

#[test]
fn semver_selection_matches_masterminds() {
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let binary = match oracle::build(work.path()) {
        Ok(b) => b,
        Err(why) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("skipping the Masterminds differential test: {why}");
            return;
        }
        Err(why) => panic!("the Masterminds oracle is required in CI: {why}"),
    };
    let mut rng = Rng(0x5DEE_CE66_D1CE_4E5B);
    let cases: Vec<(String, Vec<String>)> = (0..CASES)
        .map(|_| {
            let tags = (0..1 + rng.below(24)).map(|_| tag(&mut rng)).collect();
            (range(&mut rng), tags)
        })
        .collect();
    let input: String = cases
        .iter()
        .map(|(r, tags)| format!("{r}\t{}\n", tags.join(" ")))
        .collect();
    let mut child = Command::new(&binary)
        .arg("select")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running the oracle: {e}"));
    let mut stdin = child.stdin.take().unwrap_or_else(|| panic!("no stdin"));
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    writer
        .join()
        .unwrap_or_else(|_| panic!("writer thread"))
        .unwrap_or_else(|e| panic!("writing cases: {e}"));
    assert!(out.status.success(), "the oracle failed");
    let answers: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(answers.len(), cases.len());

    let mut mismatches = Vec::new();
    let (mut selected, mut rejected) = (0, 0);
    for ((range, tags), theirs) in cases.iter().zip(&answers) {
        let mine = ours(range, tags);
        match theirs.as_str() {
            "!" => rejected += 1,
            "-" => {}
            _ => selected += 1,
        }
        if &mine != theirs {
            mismatches.push(format!(
                "range {range:?} tags {tags:?}: hoist {mine}, Masterminds {theirs}"
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {CASES} cases differ:\n{}",
        mismatches.len(),
        mismatches
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The generator must exercise all three outcomes, or the test proves little.
    assert!(
        selected > CASES / 4 && rejected > CASES / 50,
        "selected {selected}, rejected {rejected}"
    );
}
