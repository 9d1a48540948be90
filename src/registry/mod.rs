//! The registry stage: which tags an image repository has, and which
//! digest a tag points at.

mod chart;
mod client;
mod credentials;
mod error;
mod exclusion;
pub(crate) mod headers;
pub mod identity;
mod reference;

pub use chart::{ChartIndex, Origin, chart_name_problem, index_versions};
pub use client::{
    DEFAULT_MAX_TAGS, MANIFEST_ACCEPT, Manifest, Registry, RegistrySettings, ScanTarget, TlsConfig,
};
pub use credentials::{Credential, CredentialError, DockerConfig};
pub use error::{FailureKind, RegistryError};
pub use exclusion::{ExclusionError, Exclusions};
pub use reference::{DOCKER_HUB, ImageName, ReferenceError};

use std::future::Future;

use crate::model::Tag;

/// Where tags and digests come from: the registry, or a fake in tests of
/// the stages that use them.
pub trait TagSource: Sync {
    fn list_tags(
        &self,
        target: &ScanTarget,
    ) -> impl Future<Output = Result<Vec<Tag>, RegistryError>> + Send;
    fn digest(
        &self,
        target: &ScanTarget,
        tag: &str,
    ) -> impl Future<Output = Result<String, RegistryError>> + Send;
    /// The manifest a tag or digest names, None when there is none.
    fn manifest(
        &self,
        target: &ScanTarget,
        reference: &str,
        accept: &str,
    ) -> impl Future<Output = Result<Option<Manifest>, RegistryError>> + Send;
    /// The OCI 1.1 referrers index of a digest, None without the API.
    fn referrers(
        &self,
        target: &ScanTarget,
        digest: &str,
    ) -> impl Future<Output = Result<Option<Manifest>, RegistryError>> + Send;
    /// A blob by digest, at most `limit` bytes.
    fn blob(
        &self,
        target: &ScanTarget,
        digest: &str,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<u8>, RegistryError>> + Send;
}

impl TagSource for Registry {
    fn list_tags(
        &self,
        target: &ScanTarget,
    ) -> impl Future<Output = Result<Vec<Tag>, RegistryError>> + Send {
        Registry::list_tags(self, target)
    }

    fn digest(
        &self,
        target: &ScanTarget,
        tag: &str,
    ) -> impl Future<Output = Result<String, RegistryError>> + Send {
        Registry::digest(self, target, tag)
    }

    fn manifest(
        &self,
        target: &ScanTarget,
        reference: &str,
        accept: &str,
    ) -> impl Future<Output = Result<Option<Manifest>, RegistryError>> + Send {
        Registry::manifest(self, target, reference, accept)
    }

    fn referrers(
        &self,
        target: &ScanTarget,
        digest: &str,
    ) -> impl Future<Output = Result<Option<Manifest>, RegistryError>> + Send {
        Registry::referrers(self, target, digest)
    }

    fn blob(
        &self,
        target: &ScanTarget,
        digest: &str,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<u8>, RegistryError>> + Send {
        Registry::blob(self, target, digest, limit)
    }
}
