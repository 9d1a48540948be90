//! Tags read as semantic versions, the way Flux reads them.
//!
//! Flux parses tags with Masterminds' `StrictNewVersion` after dropping a
//! leading `v`: exactly three numeric parts, an optional prerelease and
//! optional build metadata. hoist follows that with one deliberate
//! difference: leading zeros in the numeric parts (`2025.07.03`) are allowed,
//! because calendar-versioned images are common and Flux silently ignores
//! them.
//!
//! A [`Version`] borrows its prerelease from the tag, so reading a tag does
//! not allocate; the selection loop reads every tag a registry returns.

use std::cmp::Ordering;

/// The parts of a version that take part in precedence. Build metadata is
/// validated but, as the semver spec says, does not order versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Version<'a> {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    /// The prerelease without its leading `-`; empty for a release.
    pub pre: &'a str,
}

impl<'a> Version<'a> {
    /// Reads a tag as a version, or `None` when the tag is not one.
    pub fn parse_tag(tag: &'a str) -> Option<Self> {
        let s = tag.strip_prefix('v').unwrap_or(tag);
        let bytes = s.as_bytes();
        let mut at = 0;
        let major = read_number(bytes, &mut at)?;
        expect(bytes, &mut at, b'.')?;
        let minor = read_number(bytes, &mut at)?;
        expect(bytes, &mut at, b'.')?;
        let patch = read_number(bytes, &mut at)?;
        let mut pre = "";
        if bytes.get(at) == Some(&b'-') {
            let start = at + 1;
            let end = s[start..].find('+').map_or(s.len(), |i| start + i);
            pre = &s[start..end];
            if !valid_prerelease(pre) {
                return None;
            }
            at = end;
        }
        if bytes.get(at) == Some(&b'+') {
            if !valid_metadata(&s[at + 1..]) {
                return None;
            }
            at = s.len();
        }
        (at == s.len()).then_some(Version {
            major,
            minor,
            patch,
            pre,
        })
    }

    pub fn is_prerelease(&self) -> bool {
        !self.pre.is_empty()
    }

    /// Precedence as semver 2.0 and Masterminds define it.
    pub fn precedence(&self, other: &Version<'_>) -> Ordering {
        self.major
            .cmp(&other.major)
            .then(self.minor.cmp(&other.minor))
            .then(self.patch.cmp(&other.patch))
            .then_with(|| match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => compare_prerelease(self.pre, other.pre),
            })
    }
}

/// A version kept beyond the life of the text it was read from: the running
/// best of a selection, whose tag text may live in a reused buffer.
#[derive(Clone, Debug, Default)]
pub struct OwnedVersion {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    pub pre: String,
}

impl OwnedVersion {
    pub fn set(&mut self, v: &Version<'_>) {
        self.major = v.major;
        self.minor = v.minor;
        self.patch = v.patch;
        self.pre.clear();
        self.pre.push_str(v.pre);
    }

    pub fn as_version(&self) -> Version<'_> {
        Version {
            major: self.major,
            minor: self.minor,
            patch: self.patch,
            pre: &self.pre,
        }
    }
}

/// Reads one numeric part. Leading zeros are allowed (see the module docs);
/// a part too large for u64 makes the tag not a version, as in Masterminds.
fn read_number(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let start = *at;
    let mut n: u64 = 0;
    while let Some(&b) = bytes.get(*at) {
        if !b.is_ascii_digit() {
            break;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        *at += 1;
    }
    (*at > start).then_some(n)
}

fn expect(bytes: &[u8], at: &mut usize, want: u8) -> Option<()> {
    (bytes.get(*at) == Some(&want)).then(|| *at += 1)
}

fn is_identifier_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-'
}

/// Dot-separated, non-empty `[0-9A-Za-z-]` identifiers; numeric ones without
/// leading zeros.
pub(crate) fn valid_prerelease(pre: &str) -> bool {
    pre.split('.').all(|id| {
        let b = id.as_bytes();
        if b.is_empty() || !b.iter().all(|&c| is_identifier_byte(c)) {
            return false;
        }
        !(b.iter().all(u8::is_ascii_digit) && b.len() > 1 && b[0] == b'0')
    })
}

pub(crate) fn valid_metadata(meta: &str) -> bool {
    meta.split('.')
        .all(|id| !id.is_empty() && id.bytes().all(is_identifier_byte))
}

/// Semver 2.0 prerelease precedence: identifier by identifier, numeric ones
/// numerically and below alphanumeric ones, a shorter list first when it is
/// a prefix of the longer.
pub fn compare_prerelease(a: &str, b: &str) -> Ordering {
    let mut left = a.split('.');
    let mut right = b.split('.');
    loop {
        match (left.next(), right.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let ord = compare_identifier(x, y);
                if ord != Ordering::Equal {
                    return ord;
                }
            }
        }
    }
}

fn compare_identifier(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    match (numeric_identifier(a), numeric_identifier(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.as_bytes().cmp(b.as_bytes()),
    }
}

fn numeric_identifier(id: &str) -> Option<u64> {
    if id.bytes().all(|b| b.is_ascii_digit()) {
        id.parse().ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version<'_> {
        Version::parse_tag(s).unwrap_or_else(|| panic!("{s} should parse"))
    }

    #[test]
    fn reads_tags_as_flux_does() {
        for ok in [
            "1.2.3",
            "v1.2.3",
            "0.0.0",
            "1.2.3-rc.1",
            "1.2.3-rc-1.x",
            "1.2.3+build.5",
            "1.2.3-0+b",
            "2025.07.03",
        ] {
            assert!(Version::parse_tag(ok).is_some(), "{ok}");
        }
        for bad in [
            "",
            "v",
            "V1.2.3",
            "1.2",
            "1",
            "1.0.0.1",
            "1.0.0p",
            "1.2.3-",
            "1.2.3-rc..1",
            "1.2.3-01",
            "1.2.3+",
            "1.2.3+a..b",
            "1.2.3-rc_1",
            "latest",
            " 1.2.3",
            "1.2.3 ",
            "vv1.2.3",
            "1.2.-3",
            "18446744073709551616.0.0",
        ] {
            assert!(Version::parse_tag(bad).is_none(), "{bad:?}");
        }
        assert_eq!(v("2025.07.03").minor, 7);
        assert_eq!(v("1.2.3-rc.1+b").pre, "rc.1");
    }

    #[test]
    fn precedence_follows_semver() {
        let ordered = [
            "1.0.0-0",
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.0.1",
            "1.1.0",
            "1.10.0",
            "2.0.0",
        ];
        for pair in ordered.windows(2) {
            assert_eq!(
                v(pair[0]).precedence(&v(pair[1])),
                Ordering::Less,
                "{pair:?}"
            );
        }
        assert_eq!(v("1.0.0+a").precedence(&v("v1.0.0")), Ordering::Equal);
        assert_eq!(v("2025.07.03").precedence(&v("2025.7.3")), Ordering::Equal);
    }
}
