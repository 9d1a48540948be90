//! hoist: a container image update bot for GitOps.
//!
//! Data flows one way: registry scan → [`policy`] select → rewrite →
//! publish → sync. The stages share plain values from [`model`] and the
//! object types from [`api`].

pub mod api;
pub mod cli;
pub mod controller;
pub mod forge;
#[doc(hidden)]
pub mod fuzz;
pub mod gate;
pub mod git;
pub mod gotemplate;
pub mod load;
pub mod message;
pub mod metrics;
pub mod model;
pub mod net;
pub mod notify;
pub mod pipeline;
pub mod policy;
pub mod promotion;
pub mod redact;
pub mod registry;
pub mod rewrite;
pub mod schedule;
pub mod serve;
pub mod store;
pub mod sync;
pub mod webhook;

/// Installs ring as rustls' crypto provider, before any HTTP client is built:
/// reqwest is built without a default one (no aws-lc). A second install
/// attempt fails harmlessly.
pub(crate) fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
