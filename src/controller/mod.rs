//! `hoist controller`: a second thin driver over the pipeline `hoist run`
//! uses, driven by ImageRepository, ImagePolicy and ImageUpdateAutomation
//! objects in a cluster. Each kind has a reconciler; results go to the
//! objects' `.status` (server-side apply, field manager `hoist`), tags to the
//! store on the pod's volume.
//!
//! Objects read from the cluster go through the same loader and checks as
//! files (`load::load_text`), so an invalid spec gets the same message in
//! both modes — here as a `Stalled` condition.

mod automation;
pub mod conditions;
mod policy;
mod receiver;
mod repository;
mod service_accounts;

mod context;
pub mod kinds;
mod lease;
mod notification;
mod status;
mod wiring;

pub use context::Context;
use context::*;
pub use kinds::Flavor;
use kinds::{Kind, typed};
use lease::*;
use status::*;
pub use wiring::run;
use wiring::*;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;

use crate::api::ImagePolicy;
use crate::git::Git;
use crate::load::{LoadError, ObjectSet};
use crate::metrics;
use crate::registry::{DockerConfig, Registry, RegistrySettings};
use crate::store::Store;

/// The field manager of every write hoist makes.
pub const MANAGER: &str = "hoist";
/// The annotation that asks for a reconcile now (its value is any new
/// string, usually the time), as Flux's `reconcile.fluxcd.io/requestedAt`.
pub const REQUESTED_AT: &str = "reconcile.hoist.dev/requestedAt";

/// How the controller runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// Watch only this namespace (default: all).
    pub namespace: Option<String>,
    /// Reconcile only objects with these labels, to shard objects across
    /// hoist instances.
    pub label_selector: Option<String>,
    /// The store and repository cache (an emptyDir in the Deployment).
    pub state_dir: PathBuf,
    /// This instance's name: events and the lease name it.
    pub identity: String,
    /// Leader election on a Lease, or none (one replica, or tests).
    pub leader_election: Option<LeaderElection>,
    /// Where `/metrics`, `/healthz` and `/readyz` are served, if anywhere.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Where Receivers are served, if anywhere.
    pub webhook_addr: Option<std::net::SocketAddr>,
    /// How `spec.sync` reaches the cluster, and as whom.
    pub sync: crate::sync::ClusterAccess,
    /// Refuse every reference to another namespace's ImageRepository
    /// (`--no-cross-namespace-refs`).
    pub no_cross_namespace_refs: bool,
    /// Whose objects to reconcile: hoist's, or Flux's (`--flux`).
    pub flavor: Flavor,
    /// `spec.serviceAccountName` on ImageRepositories with a cloud
    /// provider (`--object-level-identity`): the identity of that
    /// ServiceAccount, through the TokenRequest API.
    pub object_level_identity: bool,
}

/// Where the Lease lives.
#[derive(Clone, Debug)]
pub struct LeaderElection {
    pub namespace: String,
    pub name: String,
    /// Seconds a leader's lock lasts without renewal.
    pub duration: u64,
}

/// Why the controller stopped.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("{0}")]
    Setup(String),
    #[error("leader election: {0}")]
    Lease(String),
    #[error("lost the leader lease; stopping so that a standby takes over")]
    LostLease,
}

/// Why one reconcile failed; retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A stage of the pipeline failed, with its kind.
    #[error("{0}")]
    Failed(crate::pipeline::ErrorReport),
    #[error("{0}")]
    Transient(String),
}

impl ReconcileError {
    /// The `reason` label of `hoist_reconcile_errors_total`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            ReconcileError::Kube(_) => "kube_api",
            ReconcileError::Failed(report) => report.kind,
            ReconcileError::Transient(_) => "transient",
        }
    }
}
