//! OCI image manifests, indexes and configs, read for what the gate needs:
//! platforms, the build time, and the layers (with their annotations) of
//! cosign's signature and attestation manifests. Unknown fields are
//! ignored, as the image spec asks.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::Platform;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// The annotation BuildKit and others write for the build time.
pub const CREATED_ANNOTATION: &str = "org.opencontainers.image.created";

/// A descriptor: what a manifest points at.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub platform: Option<DescriptorPlatform>,
    #[serde(default)]
    pub artifact_type: Option<String>,
}

/// A platform as an index entry or an image config writes it.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct DescriptorPlatform {
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub variant: Option<String>,
}

impl DescriptorPlatform {
    /// The platform, None when os or architecture is missing (configs
    /// that are not images', a Helm chart's or cosign's) or `unknown`
    /// (BuildKit's attestation entries).
    pub fn platform(&self) -> Option<Platform> {
        (!self.os.is_empty() && !self.architecture.is_empty() && self.os != "unknown").then(|| {
            Platform {
                os: self.os.clone(),
                architecture: self.architecture.clone(),
                variant: self.variant.clone().filter(|v| !v.is_empty()),
            }
        })
    }
}

/// An image manifest or an index: which one is told by `mediaType` (or,
/// when a Docker-era document leaves it out, by which list it has).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Document {
    #[serde(default)]
    pub media_type: Option<String>,
    #[serde(default)]
    pub artifact_type: Option<String>,
    #[serde(default)]
    pub config: Option<Descriptor>,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

impl Document {
    /// Reads a manifest or index; `content_type` is the registry's, used
    /// when the document does not say.
    pub fn parse(bytes: &[u8], content_type: &str) -> Result<Document, String> {
        let mut document: Document =
            serde_json::from_slice(bytes).map_err(|e| format!("not an OCI manifest: {e}"))?;
        if document.media_type.is_none() && !content_type.is_empty() {
            let bare = content_type.split(';').next().unwrap_or("").trim();
            document.media_type = Some(bare.to_string());
        }
        Ok(document)
    }

    /// Whether this is an index (or a Docker manifest list).
    pub fn is_index(&self) -> bool {
        match self.media_type.as_deref() {
            Some(OCI_INDEX | DOCKER_LIST) => true,
            Some(OCI_MANIFEST | DOCKER_MANIFEST) => false,
            _ => !self.manifests.is_empty() && self.config.is_none(),
        }
    }

    /// The platforms of an index's images. Entries that are not images for
    /// a platform (BuildKit's attestation manifests, `unknown/unknown`) do
    /// not count.
    pub fn index_platforms(&self) -> Vec<Platform> {
        let mut platforms: Vec<Platform> = self
            .manifests
            .iter()
            .filter(|m| {
                m.annotations
                    .get("vnd.docker.reference.type")
                    .map(String::as_str)
                    != Some("attestation-manifest")
            })
            .filter_map(|m| m.platform.as_ref()?.platform())
            .collect();
        platforms.sort();
        platforms.dedup();
        platforms
    }
}

/// What the gate reads of an image config.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Config {
    #[serde(default)]
    pub created: Option<String>,
    #[serde(flatten)]
    pub platform: DescriptorPlatform,
}

impl Config {
    pub fn parse(bytes: &[u8]) -> Result<Config, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("not an OCI image config: {e}"))
    }

    /// The config's platform; None for configs that are not images'.
    pub fn platform(&self) -> Option<Platform> {
        self.platform.platform()
    }
}

/// An RFC 3339 time as seconds since the epoch.
pub fn parse_time(text: &str) -> Option<i64> {
    text.parse::<jiff::Timestamp>().ok().map(|t| t.as_second())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_lists_its_image_platforms_but_not_its_attestations() {
        let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:aa","size":1,"platform":{"os":"linux","architecture":"arm64","variant":"v8"}},
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:bb","size":1,"platform":{"os":"linux","architecture":"amd64"}},
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:cc","size":1,"platform":{"os":"unknown","architecture":"unknown"},
             "annotations":{"vnd.docker.reference.type":"attestation-manifest"}}]}"#;
        let doc = Document::parse(index, "").unwrap_or_else(|e| panic!("{e}"));
        assert!(doc.is_index());
        let names: Vec<String> = doc
            .index_platforms()
            .iter()
            .map(|p| p.to_string())
            .collect();
        assert_eq!(names, ["linux/amd64", "linux/arm64/v8"]);
    }

    #[test]
    fn a_docker_list_without_media_type_is_known_by_its_content_type() {
        let doc = Document::parse(
            br#"{"schemaVersion":2,"manifests":[]}"#,
            "application/vnd.docker.distribution.manifest.list.v2+json; charset=utf-8",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(doc.is_index());
        let config = Config::parse(
            br#"{"created":"2026-01-02T03:04:05.5Z","os":"linux","architecture":"amd64"}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            config.platform().map(|p| p.to_string()).as_deref(),
            Some("linux/amd64")
        );
        assert_eq!(
            config.created.as_deref().and_then(parse_time),
            Some(1_767_323_045)
        );
        assert!(Document::parse(b"not json", "").is_err());
        assert!(Document::parse(br#"{"layers": 5}"#, "").is_err());
    }
}
