//! The objects users write: ImageRepository, ImagePolicy,
//! ImageUpdateAutomation and Receiver in `hoist.dev/v1alpha1`, and the
//! notification kinds Provider and Alert.
//!
//! Field names follow Flux's `image.toolkit.fluxcd.io/v1`, so a Flux user
//! migrates by changing the apiVersion. The same types derive the CRDs
//! (`hoist crds`) and read the files of standalone mode.

mod common;
mod flux;
mod image_policy;
mod image_repository;
mod image_update_automation;
mod notification;
mod receiver;

pub use common::*;
pub use flux::*;
pub use image_policy::*;
pub use image_repository::*;
pub use image_update_automation::*;
pub use notification::*;
pub use receiver::*;

/// The API group of hoist's own kinds.
pub const GROUP: &str = "hoist.dev";
/// The apiVersion of hoist's own kinds.
pub const API_VERSION: &str = "hoist.dev/v1alpha1";
/// Flux's image automation group; standalone mode reads its ImageRepository
/// and ImagePolicy documents unchanged.
pub const FLUX_IMAGE_GROUP: &str = "image.toolkit.fluxcd.io";
