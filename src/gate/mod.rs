//! The gate at selection: whether a candidate tag's image may be adopted.
//! A policy orders the tags; the gate then walks them newest first and
//! lets through the first whose image carries every required platform and
//! whose signature (and attestations) verify. Everything here decides on
//! bytes already fetched: the registry reads are the scan stage's
//! (`pipeline::scan::gate`), so each decision is testable without one.

pub mod cosign;
pub mod oci;

use serde::{Deserialize, Serialize};

/// Why the gate passed over a tag. The names are what the status, `hoist
/// scan` and `-o json` say.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reason {
    /// No signature at all (or none in cosign's formats).
    #[serde(rename = "unsigned")]
    Unsigned,
    /// A signature that does not verify with any trusted key or
    /// certificate, or that signs another digest.
    #[serde(rename = "bad signature")]
    BadSignature,
    /// A keyless signature whose certificate does not chain to the trust
    /// root, has expired, or is not for code signing.
    #[serde(rename = "untrusted certificate")]
    UntrustedCertificate,
    /// A keyless signature from an issuer or subject no
    /// `matchOIDCIdentity` entry allows.
    #[serde(rename = "identity mismatch")]
    IdentityMismatch,
    /// No verified attestation of a required predicate type.
    #[serde(rename = "no provenance")]
    NoProvenance,
    /// The image lacks a platform of `spec.platforms`.
    #[serde(rename = "missing platform")]
    MissingPlatform,
    /// The image's manifest or config cannot be read as OCI JSON.
    #[serde(rename = "unreadable manifest")]
    UnreadableManifest,
    /// Its rollout failed and an automation rolled it back.
    #[serde(rename = "rolled back")]
    RolledBack,
    /// `spec.promotion`: the upstream ran the tag, but not this digest
    /// healthy for the whole soak time.
    #[serde(rename = "not promoted")]
    NotPromoted,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Unsigned => "unsigned",
            Reason::BadSignature => "bad signature",
            Reason::UntrustedCertificate => "untrusted certificate",
            Reason::IdentityMismatch => "identity mismatch",
            Reason::NoProvenance => "no provenance",
            Reason::MissingPlatform => "missing platform",
            Reason::UnreadableManifest => "unreadable manifest",
            Reason::RolledBack => "rolled back",
            Reason::NotPromoted => "not promoted",
        }
    }

    /// How much a rejection says about a signature that was there: of
    /// several signatures that all fail, the most specific reason is
    /// reported (a wrong identity says more than a wrong key).
    fn specificity(self) -> u8 {
        match self {
            Reason::Unsigned => 0,
            Reason::BadSignature => 1,
            Reason::UntrustedCertificate => 2,
            Reason::IdentityMismatch => 3,
            Reason::NoProvenance
            | Reason::MissingPlatform
            | Reason::UnreadableManifest
            | Reason::RolledBack
            | Reason::NotPromoted => 4,
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A tag the gate would not let through: why, in a word and in a sentence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    pub reason: Reason,
    pub message: String,
}

impl Rejection {
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Rejection {
            reason,
            message: message.into(),
        }
    }

    /// The more specific of two rejections (the first on a tie).
    pub fn most_specific(self, other: Rejection) -> Rejection {
        if other.reason.specificity() > self.reason.specificity() {
            other
        } else {
            self
        }
    }
}

/// A platform as OCI writes it: `os/architecture[/variant]`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// Reads `linux/amd64` or `linux/arm64/v8`.
    pub fn parse(text: &str) -> Result<Platform, String> {
        let parts: Vec<&str> = text.split('/').collect();
        let valid = |p: &&str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        };
        match parts.as_slice() {
            [os, arch] if valid(os) && valid(arch) => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: None,
            }),
            [os, arch, variant] if valid(os) && valid(arch) && valid(variant) => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: Some(variant.to_string()),
            }),
            _ => Err(format!(
                "{text:?} is not a platform; expected os/architecture or os/architecture/variant, such as linux/amd64 or linux/arm64/v8"
            )),
        }
    }

    /// Whether an image built for `self` serves a requirement of
    /// `wanted`: os and architecture equal, and the variant too when the
    /// requirement names one. `linux/arm64` and `linux/arm64/v8` are the
    /// same platform (v8 is arm64's only variant, and images write either).
    pub fn serves(&self, wanted: &Platform) -> bool {
        if self.os != wanted.os || self.architecture != wanted.architecture {
            return false;
        }
        let normal = |p: &Platform| match (p.architecture.as_str(), p.variant.as_deref()) {
            ("arm64", None) => Some("v8".to_string()),
            (_, v) => v.map(str::to_string),
        };
        match normal(wanted) {
            None => true,
            Some(variant) => normal(self).as_deref() == Some(variant.as_str()),
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// The required platforms an image carrying `platforms` lacks, or its
/// rejection.
pub fn check_platforms(required: &[Platform], platforms: &[Platform]) -> Result<(), Rejection> {
    let missing: Vec<String> = required
        .iter()
        .filter(|w| !platforms.iter().any(|p| p.serves(w)))
        .map(Platform::to_string)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let has: Vec<String> = platforms.iter().map(Platform::to_string).collect();
    Err(Rejection::new(
        Reason::MissingPlatform,
        format!(
            "no {} image (it has {})",
            missing.join(", "),
            if has.is_empty() {
                "no platform".to_string()
            } else {
                has.join(", ")
            }
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Platform {
        Platform::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn platforms_parse_and_match_as_oci_writes_them() {
        assert_eq!(p("linux/arm64/v8").variant.as_deref(), Some("v8"));
        for bad in [
            "linux",
            "linux/",
            "/amd64",
            "linux/amd64/v8/x",
            "linux/am d64",
        ] {
            assert!(Platform::parse(bad).is_err(), "{bad}");
        }
        assert!(p("linux/arm64/v8").serves(&p("linux/arm64")));
        assert!(p("linux/arm64").serves(&p("linux/arm64/v8")));
        assert!(p("linux/arm/v7").serves(&p("linux/arm")));
        assert!(!p("linux/arm/v6").serves(&p("linux/arm/v7")));
        assert!(!p("linux/amd64").serves(&p("windows/amd64")));
    }

    #[test]
    fn a_missing_platform_is_named_with_what_the_image_has() {
        let required = [p("linux/amd64"), p("linux/arm64")];
        assert_eq!(
            check_platforms(&required, &[p("linux/amd64"), p("linux/arm64/v8")]),
            Ok(())
        );
        let rejection = check_platforms(&required, &[p("linux/amd64")])
            .err()
            .unwrap_or_else(|| panic!("arm64 is missing"));
        assert_eq!(rejection.reason, Reason::MissingPlatform);
        assert_eq!(
            rejection.message,
            "no linux/arm64 image (it has linux/amd64)"
        );
    }

    #[test]
    fn the_most_specific_rejection_wins() {
        let bad = Rejection::new(Reason::BadSignature, "a");
        let identity = Rejection::new(Reason::IdentityMismatch, "b");
        assert_eq!(bad.clone().most_specific(identity.clone()), identity);
        assert_eq!(identity.clone().most_specific(bad), identity);
    }
}
