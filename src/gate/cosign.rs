//! cosign's signatures and attestations, verified offline: a signature
//! layer's payload (simple signing JSON, or a DSSE envelope holding an
//! in-toto statement) must be signed by one of the policy's public keys,
//! or by a certificate that chains to the policy's trust root, is valid
//! now, is for code signing and names an allowed OIDC identity; and it
//! must be about the candidate's digest. Formats as cosign v2 writes them
//! (`cosign sign`, `cosign attest`).

use std::collections::BTreeMap;

use base64::Engine;
use regex::Regex;
use rustls_pki_types::{CertificateDer, UnixTime};
use serde::Deserialize;
use sha2::Digest as _;
use x509_parser::prelude::*;

use super::{Reason, Rejection};
use crate::api::{AttestationRequirement, OidcIdentityMatch};

/// The layer annotation holding a signature (base64).
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The signing certificate of a keyless signature (PEM).
pub const CERTIFICATE_ANNOTATION: &str = "dev.sigstore.cosign/certificate";
/// The certificates between it and the root (PEM), root included.
pub const CHAIN_ANNOTATION: &str = "dev.sigstore.cosign/chain";
/// Rekor's promise to log the signature, and when it did (JSON).
pub const BUNDLE_ANNOTATION: &str = "dev.sigstore.cosign/bundle";
/// The layer media types of signatures and attestations.
pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
pub const DSSE_ENVELOPE: &str = "application/vnd.dsse.envelope.v1+json";
const IN_TOTO: &str = "application/vnd.in-toto+json";

/// Fulcio's OIDC issuer extensions: v2 (a DER UTF8String) and v1 (the
/// bare bytes), as cosign reads them.
const ISSUER_V2: &str = "1.3.6.1.4.1.57264.1.8";
const ISSUER_V1: &str = "1.3.6.1.4.1.57264.1.1";
/// id-kp-codeSigning (1.3.6.1.5.5.7.3.3), DER content octets.
const CODE_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];
const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];

/// Where cosign stores the signatures of `digest` (`sha256:<hex>`):
/// `sha256-<hex>.sig` in the image's repository.
pub fn signature_tag(digest: &str) -> Option<String> {
    digest_tag(digest).map(|t| format!("{t}.sig"))
}

/// Where cosign stores the attestations of `digest`.
pub fn attestation_tag(digest: &str) -> Option<String> {
    digest_tag(digest).map(|t| format!("{t}.att"))
}

fn digest_tag(digest: &str) -> Option<String> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| format!("sha256-{hex}"))
}

/// A public key a signature may verify with.
#[derive(Clone, Debug)]
struct PublicKey {
    /// Where it came from: `Secret ns/name key cosign.pub`.
    name: String,
    algorithms: Vec<&'static dyn ring::signature::VerificationAlgorithm>,
    bytes: Vec<u8>,
}

impl PublicKey {
    /// From a DER SubjectPublicKeyInfo: ECDSA P-256 and P-384 (SHA-256, as
    /// cosign signs; SHA-384 too for P-384), RSA PKCS#1 v1.5 and Ed25519.
    fn from_spki(name: &str, der: &[u8]) -> Result<PublicKey, String> {
        let (_, spki) = SubjectPublicKeyInfo::from_der(der)
            .map_err(|e| format!("{name}: not a public key: {e}"))?;
        PublicKey::from_parsed(name, &spki)
    }

    fn from_parsed(name: &str, spki: &SubjectPublicKeyInfo<'_>) -> Result<PublicKey, String> {
        use ring::signature as sig;
        let algorithm = spki.algorithm.algorithm.to_id_string();
        let curve = spki.algorithm.parameters.as_ref().map(|p| p.data);
        let algorithms: Vec<&'static dyn sig::VerificationAlgorithm> = match (
            algorithm.as_str(),
            curve,
        ) {
            ("1.2.840.10045.2.1", Some(P256)) => vec![&sig::ECDSA_P256_SHA256_ASN1],
            ("1.2.840.10045.2.1", Some(P384)) => {
                vec![&sig::ECDSA_P384_SHA256_ASN1, &sig::ECDSA_P384_SHA384_ASN1]
            }
            ("1.2.840.113549.1.1.1", _) => vec![&sig::RSA_PKCS1_2048_8192_SHA256],
            ("1.3.101.112", _) => vec![&sig::ED25519],
            _ => {
                return Err(format!(
                    "{name}: a key of algorithm {algorithm} is not supported (ECDSA P-256 or P-384, RSA, Ed25519 are)"
                ));
            }
        };
        Ok(PublicKey {
            name: name.to_string(),
            algorithms,
            bytes: spki.subject_public_key.data.to_vec(),
        })
    }

    fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        self.algorithms.iter().any(|alg| {
            ring::signature::UnparsedPublicKey::new(*alg, &self.bytes)
                .verify(message, signature)
                .is_ok()
        })
    }
}

/// An allowed keyless identity.
#[derive(Clone, Debug)]
struct Identity {
    issuer: Regex,
    subject: Regex,
}

/// What a policy's `spec.verify` trusts, compiled with the Secrets it
/// names.
#[derive(Clone, Debug)]
pub struct TrustPolicy {
    keys: Vec<PublicKey>,
    roots: Vec<CertificateDer<'static>>,
    /// Rekor's public keys: with any, a keyless signature must carry a
    /// bundle they signed, and its certificate is judged at the logged
    /// time (Fulcio's certificates live ten minutes).
    rekor: Vec<PublicKey>,
    identities: Vec<Identity>,
    attestations: Vec<String>,
    fingerprint: String,
}

/// A policy that cannot be compiled: which field, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustError {
    pub field: String,
    pub message: String,
}

impl TrustPolicy {
    /// `keys`: every `*.pub` entry of `secretRef`'s Secret (name, PEM);
    /// `roots`: `ca.crt` of `trustRootRef`'s, `rekor` its `rekor.pub`.
    /// Keys, when there are any, decide alone (as in Flux); without them a
    /// signature must be keyless.
    pub fn new(
        keys: &[(String, Vec<u8>)],
        roots: Option<&[u8]>,
        rekor: Option<&[u8]>,
        identities: &[OidcIdentityMatch],
        attestations: &[AttestationRequirement],
    ) -> Result<TrustPolicy, TrustError> {
        let err = |field: &str, message: String| TrustError {
            field: field.to_string(),
            message,
        };
        let mut fingerprint = sha2::Sha256::new();
        let mut public_keys = Vec::new();
        for (name, pem) in keys {
            let blocks = pem_blocks(pem)
                .map_err(|e| err("spec.verify.secretRef", format!("{name}: {e}")))?;
            let [("PUBLIC KEY", der)] = blocks
                .iter()
                .map(|(l, d)| (l.as_str(), d.as_slice()))
                .collect::<Vec<_>>()[..]
            else {
                return Err(err(
                    "spec.verify.secretRef",
                    format!("{name}: expected one PEM \"PUBLIC KEY\" block (cosign.pub)"),
                ));
            };
            public_keys.push(
                PublicKey::from_spki(name, der).map_err(|e| err("spec.verify.secretRef", e))?,
            );
            frame(&mut fingerprint, b"key", der);
        }
        let mut root_certs = Vec::new();
        let mut rekor_keys = Vec::new();
        if let Some(pem) = rekor.filter(|_| public_keys.is_empty()) {
            for (label, der) in pem_blocks(pem)
                .map_err(|e| err("spec.verify.trustRootRef", format!("rekor.pub: {e}")))?
            {
                if label == "PUBLIC KEY" {
                    rekor_keys.push(
                        PublicKey::from_spki("rekor.pub", &der)
                            .map_err(|e| err("spec.verify.trustRootRef", e))?,
                    );
                    frame(&mut fingerprint, b"rekor", &der);
                }
            }
            if rekor_keys.is_empty() {
                return Err(err(
                    "spec.verify.trustRootRef",
                    "rekor.pub holds no PEM public key".into(),
                ));
            }
        }
        if public_keys.is_empty() {
            let Some(pem) = roots else {
                return Err(err(
                    "spec.verify.trustRootRef",
                    "keyless verification needs the Fulcio CA's root certificates (ca.crt); hoist does not fetch the public Sigstore instance's TUF root. Set trustRootRef, or name cosign public keys in secretRef".into(),
                ));
            };
            for (label, der) in pem_blocks(pem)
                .map_err(|e| err("spec.verify.trustRootRef", format!("ca.crt: {e}")))?
            {
                if label != "CERTIFICATE" {
                    continue;
                }
                let owned = CertificateDer::from(der.clone()).into_owned();
                webpki::anchor_from_trusted_cert(&owned).map_err(|e| {
                    err(
                        "spec.verify.trustRootRef",
                        format!("ca.crt: a certificate cannot be a trust anchor: {e}"),
                    )
                })?;
                frame(&mut fingerprint, b"root", &der);
                root_certs.push(owned);
            }
            if root_certs.is_empty() {
                return Err(err(
                    "spec.verify.trustRootRef",
                    "ca.crt holds no PEM certificate".into(),
                ));
            }
            if identities.is_empty() {
                return Err(err(
                    "spec.verify.matchOIDCIdentity",
                    "keyless verification needs at least one issuer and subject to match; without one any certificate of the CA would do".into(),
                ));
            }
        }
        let mut compiled = Vec::new();
        for (i, identity) in identities.iter().enumerate() {
            let regex = |field: &str, text: &str| {
                Regex::new(text).map_err(|e| {
                    err(
                        &format!("spec.verify.matchOIDCIdentity[{i}].{field}"),
                        format!(
                            "{text:?} is not a regular expression: {}",
                            crate::policy::regex_reason(&e)
                        ),
                    )
                })
            };
            compiled.push(Identity {
                issuer: regex("issuer", &identity.issuer)?,
                subject: regex("subject", &identity.subject)?,
            });
            frame(&mut fingerprint, b"issuer", identity.issuer.as_bytes());
            frame(&mut fingerprint, b"subject", identity.subject.as_bytes());
        }
        let attestations: Vec<String> = attestations
            .iter()
            .map(|a| a.predicate_type.clone())
            .collect();
        for (i, predicate) in attestations.iter().enumerate() {
            if predicate.is_empty() {
                return Err(err(
                    &format!("spec.verify.attestations[{i}].predicateType"),
                    "must not be empty".into(),
                ));
            }
            frame(&mut fingerprint, b"attestation", predicate.as_bytes());
        }
        Ok(TrustPolicy {
            keys: public_keys,
            roots: root_certs,
            rekor: rekor_keys,
            identities: compiled,
            attestations,
            fingerprint: format!("{:x}", fingerprint.finalize()),
        })
    }

    /// sha256 of everything trusted: a cached verdict holds only for the
    /// policy it was reached under.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The predicate types each candidate must carry an attestation of.
    pub fn attestations(&self) -> &[String] {
        &self.attestations
    }

    /// Who signs for the policy, for messages: `a key of Secret ns/name`
    /// or `an identity of matchOIDCIdentity`.
    fn trusted(&self) -> String {
        if self.keys.is_empty() {
            "any certificate of trustRootRef's CA".to_string()
        } else {
            let names: Vec<&str> = self.keys.iter().map(|k| k.name.as_str()).collect();
            format!("the key(s) {}", names.join(", "))
        }
    }
}

/// A layer of a signature or attestation manifest: its blob and its
/// annotations.
#[derive(Clone, Debug)]
pub struct SignedLayer {
    pub media_type: String,
    pub payload: Vec<u8>,
    pub annotations: BTreeMap<String, String>,
}

/// Verifies `digest`'s signatures: Ok with who signed when one layer
/// verifies fully, else the most specific rejection of them all.
pub fn verify_signatures(
    policy: &TrustPolicy,
    digest: &str,
    layers: &[SignedLayer],
    now: u64,
) -> Result<String, Rejection> {
    let mut rejection = Rejection::new(
        Reason::Unsigned,
        "no cosign signature (no sha256-….sig manifest with a simple signing layer)",
    );
    for layer in layers.iter().filter(|l| l.media_type == SIMPLE_SIGNING) {
        let signature = match layer
            .annotations
            .get(SIGNATURE_ANNOTATION)
            .map(|s| decode(s))
        {
            Some(Ok(signature)) => signature,
            _ => {
                rejection = rejection.most_specific(Rejection::new(
                    Reason::BadSignature,
                    "a signature layer without a base64 signature annotation",
                ));
                continue;
            }
        };
        let verdict = check_signer(
            policy,
            &layer.annotations,
            &layer.payload,
            &signature,
            &layer.payload,
            now,
        )
        .and_then(|signer| check_simple_signing(&layer.payload, digest).map(|()| signer));
        match verdict {
            Ok(signer) => return Ok(signer),
            Err(r) => rejection = rejection.most_specific(r),
        }
    }
    Err(rejection)
}

/// Verifies that `digest` carries a verified attestation of every
/// predicate type the policy requires.
pub fn verify_attestations(
    policy: &TrustPolicy,
    digest: &str,
    layers: &[SignedLayer],
    now: u64,
) -> Result<(), Rejection> {
    let mut verified: Vec<String> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    for layer in layers.iter().filter(|l| l.media_type == DSSE_ENVELOPE) {
        match check_envelope(policy, digest, layer, now) {
            Ok(predicate) => verified.push(predicate),
            Err(r) => failures.push(format!("{}: {}", r.reason, r.message)),
        }
    }
    let missing: Vec<&str> = policy
        .attestations
        .iter()
        .filter(|p| !verified.contains(p))
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let found = if verified.is_empty() && failures.is_empty() {
        "there is no attestation".to_string()
    } else {
        let mut parts = Vec::new();
        if !verified.is_empty() {
            parts.push(format!("verified: {}", verified.join(", ")));
        }
        if !failures.is_empty() {
            failures.truncate(3);
            parts.push(format!("not verified: {}", failures.join("; ")));
        }
        parts.join("; ")
    };
    Err(Rejection::new(
        Reason::NoProvenance,
        format!(
            "no verified attestation of {} ({found})",
            missing.join(", ")
        ),
    ))
}

/// A DSSE envelope, as `cosign attest` writes one per layer.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    payload_type: String,
    payload: String,
    #[serde(default)]
    signatures: Vec<EnvelopeSignature>,
}

#[derive(Deserialize)]
struct EnvelopeSignature {
    sig: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Statement {
    #[serde(default)]
    subject: Vec<Subject>,
    #[serde(default)]
    predicate_type: String,
}

#[derive(Deserialize)]
struct Subject {
    #[serde(default)]
    digest: BTreeMap<String, String>,
}

/// The predicate type of a verified attestation about `digest`.
fn check_envelope(
    policy: &TrustPolicy,
    digest: &str,
    layer: &SignedLayer,
    now: u64,
) -> Result<String, Rejection> {
    let bad = |m: String| Rejection::new(Reason::BadSignature, m);
    let envelope: Envelope = serde_json::from_slice(&layer.payload)
        .map_err(|e| bad(format!("an attestation layer is not a DSSE envelope: {e}")))?;
    if envelope.payload_type != IN_TOTO {
        return Err(bad(format!(
            "an attestation of payload type {:?}, not in-toto",
            envelope.payload_type
        )));
    }
    let payload =
        decode(&envelope.payload).map_err(|e| bad(format!("an attestation payload: {e}")))?;
    let message = pae(&envelope.payload_type, &payload);
    let mut rejection = bad("an attestation envelope without signatures".into());
    let mut signer = None;
    for signature in &envelope.signatures {
        let Ok(sig) = decode(&signature.sig) else {
            continue;
        };
        // Rekor logs the whole envelope, not what its signature signs.
        match check_signer(
            policy,
            &layer.annotations,
            &message,
            &sig,
            &layer.payload,
            now,
        ) {
            Ok(s) => {
                signer = Some(s);
                break;
            }
            Err(r) => rejection = rejection.most_specific(r),
        }
    }
    if signer.is_none() {
        return Err(rejection);
    }
    let statement: Statement = serde_json::from_slice(&payload)
        .map_err(|e| bad(format!("an attestation is not an in-toto statement: {e}")))?;
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    if !statement.subject.iter().any(|s| {
        s.digest
            .get("sha256")
            .is_some_and(|d| d.eq_ignore_ascii_case(hex))
    }) {
        return Err(bad(format!(
            "an attestation of {} is about another image",
            statement.predicate_type
        )));
    }
    Ok(statement.predicate_type)
}

/// DSSE's pre-authentication encoding, what an envelope's signatures sign.
fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// The simple signing payload must name the candidate's digest.
fn check_simple_signing(payload: &[u8], digest: &str) -> Result<(), Rejection> {
    #[derive(Deserialize)]
    struct Payload {
        critical: Critical,
    }
    #[derive(Deserialize)]
    struct Critical {
        image: Image,
    }
    #[derive(Deserialize)]
    struct Image {
        #[serde(rename = "docker-manifest-digest")]
        digest: String,
    }
    let parsed: Payload = serde_json::from_slice(payload).map_err(|e| {
        Rejection::new(
            Reason::BadSignature,
            format!("the signed payload is not cosign's simple signing JSON: {e}"),
        )
    })?;
    if parsed.critical.image.digest != digest {
        return Err(Rejection::new(
            Reason::BadSignature,
            format!(
                "the signature is for {}, not this image",
                parsed.critical.image.digest
            ),
        ));
    }
    Ok(())
}

/// Who signed `message`: one of the policy's keys, or a certificate of
/// its trust root with an allowed identity.
fn check_signer(
    policy: &TrustPolicy,
    annotations: &BTreeMap<String, String>,
    message: &[u8],
    signature: &[u8],
    logged: &[u8],
    now: u64,
) -> Result<String, Rejection> {
    if !policy.keys.is_empty() {
        return policy
            .keys
            .iter()
            .find(|k| k.verifies(message, signature))
            .map(|k| format!("key {}", k.name))
            .ok_or_else(|| {
                Rejection::new(
                    Reason::BadSignature,
                    format!("the signature does not verify with {}", policy.trusted()),
                )
            });
    }
    let untrusted = |m: String| Rejection::new(Reason::UntrustedCertificate, m);
    let Some(pem) = annotations.get(CERTIFICATE_ANNOTATION) else {
        return Err(untrusted(
            "signed with a key, not a certificate; the policy trusts certificates of trustRootRef"
                .into(),
        ));
    };
    let leaf = pem_blocks(pem.as_bytes())
        .ok()
        .and_then(|b| b.into_iter().find(|(l, _)| l == "CERTIFICATE"))
        .map(|(_, der)| CertificateDer::from(der))
        .ok_or_else(|| untrusted("the certificate annotation holds no PEM certificate".into()))?;
    let intermediates: Vec<CertificateDer<'static>> = annotations
        .get(CHAIN_ANNOTATION)
        .and_then(|c| pem_blocks(c.as_bytes()).ok())
        .unwrap_or_default()
        .into_iter()
        .filter(|(l, _)| l == "CERTIFICATE")
        .map(|(_, der)| CertificateDer::from(der))
        .filter(|c| !policy.roots.contains(c))
        .collect();
    // The time the certificate must have been valid at: the one Rekor
    // logged the signature at, when the policy trusts a Rekor.
    let at = match (policy.rekor.is_empty(), annotations.get(BUNDLE_ANNOTATION)) {
        (true, _) => now,
        (false, None) => {
            return Err(untrusted(
                "no Rekor bundle; with trustRootRef's rekor.pub a signature must be in the transparency log".into(),
            ));
        }
        (false, Some(bundle)) => check_bundle(policy, bundle, &leaf, logged, signature)?,
    };
    let anchors: Vec<_> = policy
        .roots
        .iter()
        .filter_map(|r| webpki::anchor_from_trusted_cert(r).ok())
        .collect();
    let end_entity = webpki::EndEntityCert::try_from(&leaf)
        .map_err(|e| untrusted(format!("the signing certificate cannot be read: {e}")))?;
    end_entity
        .verify_for_usage(
            CERT_ALGORITHMS,
            &anchors,
            &intermediates,
            UnixTime::since_unix_epoch(std::time::Duration::from_secs(at)),
            // Fulcio's intermediates carry codeSigning, other CAs' often no
            // EKU at all; the leaf's own is checked below, where it must be
            // there.
            webpki::KeyUsage::required_if_present(CODE_SIGNING),
            None,
            None,
        )
        .map_err(|e| {
            let when = if at == now {
                "now".to_string()
            } else {
                format!("when Rekor logged it ({})", timestamp(at))
            };
            untrusted(format!(
                "the signing certificate does not chain to trustRootRef's CA {when}: {}",
                certificate_error(&e)
            ))
        })?;
    let (_, cert) = X509Certificate::from_der(&leaf)
        .map_err(|e| untrusted(format!("the signing certificate cannot be read: {e}")))?;
    if !matches!(cert.extended_key_usage(), Ok(Some(eku)) if eku.value.code_signing) {
        return Err(untrusted(
            "the signing certificate is not for code signing".into(),
        ));
    }
    let key =
        PublicKey::from_parsed("the signing certificate", cert.public_key()).map_err(untrusted)?;
    if !key.verifies(message, signature) {
        return Err(Rejection::new(
            Reason::BadSignature,
            "the signature does not verify with its certificate's key",
        ));
    }
    let (issuer, subjects) = identity_of(&cert);
    let issuer_text = issuer.clone().unwrap_or_default();
    let allowed = policy.identities.iter().any(|id| {
        issuer.as_deref().is_some_and(|i| id.issuer.is_match(i))
            && subjects.iter().any(|s| id.subject.is_match(s))
    });
    if !allowed {
        return Err(Rejection::new(
            Reason::IdentityMismatch,
            format!(
                "signed by {} (issuer {}); no matchOIDCIdentity entry allows it",
                if subjects.is_empty() {
                    "a certificate without a subject alternative name".to_string()
                } else {
                    subjects.join(", ")
                },
                if issuer_text.is_empty() {
                    "none"
                } else {
                    &issuer_text
                },
            ),
        ));
    }
    Ok(format!("{} (issuer {issuer_text})", subjects.join(", ")))
}

/// cosign's bundle: Rekor's signed entry timestamp over the entry.
#[derive(Deserialize)]
struct Bundle {
    #[serde(rename = "SignedEntryTimestamp")]
    signed_entry_timestamp: String,
    #[serde(rename = "Payload")]
    payload: BundlePayload,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BundlePayload {
    body: String,
    integrated_time: i64,
    log_index: i64,
    #[serde(rename = "logID")]
    log_id: String,
}

/// The time Rekor logged the signature of `logged` (the payload Rekor
/// hashed: a simple signing payload, or an attestation's whole envelope)
/// by `leaf`, when the bundle is signed by a trusted Rekor key and its
/// entry is this very payload, certificate and (for a `hashedrekord`)
/// signature: a bundle copied from another signature proves nothing.
/// Entry kinds as cosign reads them: `hashedrekord`, `intoto` (0.0.1,
/// 0.0.2) and `dsse`.
fn check_bundle(
    policy: &TrustPolicy,
    text: &str,
    leaf: &CertificateDer<'_>,
    logged: &[u8],
    signature: &[u8],
) -> Result<u64, Rejection> {
    let untrusted = |m: String| Rejection::new(Reason::UntrustedCertificate, m);
    let bundle: Bundle = serde_json::from_str(text)
        .map_err(|e| untrusted(format!("the Rekor bundle cannot be read: {e}")))?;
    let p = &bundle.payload;
    // RFC 8785 canonical JSON of the payload, as Rekor signs it: keys in
    // order, no space; the strings are base64 and hex, the numbers
    // integers, so serde_json's escaping is the canonical one.
    let canonical = format!(
        "{{\"body\":{},\"integratedTime\":{},\"logID\":{},\"logIndex\":{}}}",
        serde_json::Value::from(p.body.as_str()),
        p.integrated_time,
        serde_json::Value::from(p.log_id.as_str()),
        p.log_index
    );
    let set = decode(&bundle.signed_entry_timestamp)
        .map_err(|e| untrusted(format!("the Rekor bundle's timestamp is {e}")))?;
    if !policy
        .rekor
        .iter()
        .any(|k| k.verifies(canonical.as_bytes(), &set))
    {
        return Err(untrusted(
            "the Rekor bundle is not signed by trustRootRef's rekor.pub".into(),
        ));
    }
    let body = decode(&p.body).map_err(|e| untrusted(format!("the Rekor entry is {e}")))?;
    let entry: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| untrusted(format!("the Rekor entry cannot be read: {e}")))?;
    let spec = &entry["spec"];
    // Where each kind keeps the logged hash, the signature (only a
    // hashedrekord's is the layer's own) and the signer's certificate.
    let (hash, logged_signature, key) = match (entry["kind"].as_str(), entry["apiVersion"].as_str())
    {
        (Some("hashedrekord"), _) => (
            &spec["data"]["hash"],
            Some(&spec["signature"]["content"]),
            &spec["signature"]["publicKey"]["content"],
        ),
        (Some("intoto"), Some("0.0.2")) => (
            &spec["content"]["hash"],
            None,
            &spec["content"]["envelope"]["signatures"][0]["publicKey"],
        ),
        (Some("intoto"), _) => (&spec["content"]["hash"], None, &spec["publicKey"]),
        (Some("dsse"), _) => (
            &spec["envelopeHash"],
            None,
            &spec["signatures"][0]["verifier"],
        ),
        (kind, _) => {
            return Err(untrusted(format!(
                "a Rekor entry of kind {}; hoist checks hashedrekord, intoto and dsse entries",
                kind.unwrap_or("none")
            )));
        }
    };
    let digest = format!("{:x}", sha2::Sha256::digest(logged));
    let logged_key = key
        .as_str()
        .and_then(|k| decode(k).ok())
        .and_then(|pem| pem_blocks(&pem).ok())
        .and_then(|b| b.into_iter().find(|(l, _)| l == "CERTIFICATE"))
        .map(|(_, der)| der);
    let same = hash["algorithm"] == "sha256"
        && hash["value"]
            .as_str()
            .is_some_and(|v| v.eq_ignore_ascii_case(&digest))
        && logged_signature
            .is_none_or(|s| s.as_str().and_then(|s| decode(s).ok()).as_deref() == Some(signature))
        && logged_key.as_deref() == Some(leaf.as_ref());
    if !same {
        return Err(untrusted(
            "the Rekor bundle logs another signature, payload or certificate".into(),
        ));
    }
    u64::try_from(p.integrated_time)
        .map_err(|_| untrusted("the Rekor bundle's time is before 1970".into()))
}

fn timestamp(at: u64) -> String {
    i64::try_from(at)
        .ok()
        .and_then(|t| jiff::Timestamp::from_second(t).ok())
        .map_or_else(|| at.to_string(), |t| t.to_string())
}

/// What cert chains may be signed with: webpki's ring algorithms.
static CERT_ALGORITHMS: &[&dyn rustls_pki_types::SignatureVerificationAlgorithm] = &[
    webpki::ring::ECDSA_P256_SHA256,
    webpki::ring::ECDSA_P256_SHA384,
    webpki::ring::ECDSA_P384_SHA256,
    webpki::ring::ECDSA_P384_SHA384,
    webpki::ring::ED25519,
    webpki::ring::RSA_PKCS1_2048_8192_SHA256,
    webpki::ring::RSA_PKCS1_2048_8192_SHA384,
    webpki::ring::RSA_PKCS1_2048_8192_SHA512,
    webpki::ring::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
];

fn certificate_error(e: &webpki::Error) -> String {
    match e {
        webpki::Error::CertExpired { .. } => "it has expired".into(),
        webpki::Error::CertNotValidYet { .. } => "it is not valid yet".into(),
        webpki::Error::UnknownIssuer => "it was issued by another CA".into(),
        webpki::Error::RequiredEkuNotFoundContext(_) => "it is not for code signing".into(),
        other => format!("{other:?}"),
    }
}

/// The OIDC issuer (Fulcio's extensions) and the subject alternative
/// names (emails, URIs) of a signing certificate.
fn identity_of(cert: &X509Certificate<'_>) -> (Option<String>, Vec<String>) {
    let mut issuer_v1 = None;
    let mut issuer_v2 = None;
    for extension in cert.extensions() {
        match extension.oid.to_id_string().as_str() {
            ISSUER_V2 => {
                issuer_v2 = x509_parser::asn1_rs::Utf8String::from_der(extension.value)
                    .ok()
                    .map(|(_, s)| s.string());
            }
            ISSUER_V1 => {
                issuer_v1 = std::str::from_utf8(extension.value)
                    .ok()
                    .map(str::to_string)
            }
            _ => {}
        }
    }
    let subjects = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                GeneralName::RFC822Name(email) => Some(email.to_string()),
                GeneralName::URI(uri) => Some(uri.to_string()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    (issuer_v2.or(issuer_v1), subjects)
}

/// One field into the trust policy's fingerprint, its kind and length
/// first: no two policies may hash alike by moving bytes between fields
/// (a verdict cached under one must not serve the other).
fn frame(hash: &mut sha2::Sha256, kind: &[u8], value: &[u8]) {
    hash.update((kind.len() as u64).to_be_bytes());
    hash.update(kind);
    hash.update((value.len() as u64).to_be_bytes());
    hash.update(value);
}

fn decode(text: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| format!("not base64: {e}"))
}

/// PEM blocks as (label, DER).
fn pem_blocks(bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut blocks = Vec::new();
    for pem in x509_parser::pem::Pem::iter_from_buffer(bytes) {
        let pem = pem.map_err(|e| format!("not PEM: {e}"))?;
        blocks.push((pem.label, pem.contents));
    }
    if blocks.is_empty() {
        return Err("no PEM block".into());
    }
    Ok(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosign_tags_follow_the_digest() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(
            signature_tag(&digest),
            Some(format!("sha256-{}.sig", "ab".repeat(32)))
        );
        assert_eq!(
            attestation_tag(&digest),
            Some(format!("sha256-{}.att", "ab".repeat(32)))
        );
        assert_eq!(signature_tag("sha256:../x"), None);
        assert_eq!(signature_tag("sha512:ab"), None);
    }

    /// A P-256 public key (`openssl ec -pubout`), for policies built in
    /// tests.
    const PUBLIC_KEY: &[u8] = b"-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEDX84pT1ibcB7jHVDzF+yw0h3ksTS\nplyUp6C0TYlVFdb2xMHlq/TzGZEPMMA7NHPBC+pkQmYtAoWAC+hIxZBHHw==\n-----END PUBLIC KEY-----\n";

    #[test]
    fn fingerprints_do_not_collide_across_fields() {
        let keys = [("cosign.pub".to_string(), PUBLIC_KEY.to_vec())];
        let policy = |subject: &str, attestations: &[&str]| {
            let identity = [OidcIdentityMatch {
                issuer: "i".into(),
                subject: subject.into(),
            }];
            let attestations: Vec<AttestationRequirement> = attestations
                .iter()
                .map(|p| AttestationRequirement {
                    predicate_type: p.to_string(),
                })
                .collect();
            TrustPolicy::new(&keys, None, None, &identity, &attestations)
                .unwrap_or_else(|e| panic!("{e:?}"))
                .fingerprint()
                .to_string()
        };
        // Bytes moved from an identity into a required attestation make
        // another policy, and another cache key.
        assert_ne!(policy("y\0attestation\0z", &[]), policy("y", &["z"]));
        assert_eq!(policy("y", &["z"]), policy("y", &["z"]));
    }

    #[test]
    fn pae_is_dsse_v1() {
        assert_eq!(pae("t", b"ab"), b"DSSEv1 1 t 2 ab".to_vec());
    }

    #[test]
    fn a_policy_without_keys_needs_a_root_and_an_identity() {
        let e = TrustPolicy::new(&[], None, None, &[], &[])
            .err()
            .unwrap_or_else(|| panic!("accepted"));
        assert_eq!(e.field, "spec.verify.trustRootRef");
        let e = TrustPolicy::new(
            &[("cosign.pub".into(), b"junk".to_vec())],
            None,
            None,
            &[],
            &[],
        )
        .err()
        .unwrap_or_else(|| panic!("accepted"));
        assert_eq!(e.field, "spec.verify.secretRef");
        assert!(e.message.starts_with("cosign.pub: "), "{}", e.message);
    }
}
