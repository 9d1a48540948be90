//! The registry stage: which tags an image repository has.
//!
//! So far this holds the exclusion list; the OCI client comes with the
//! scanner.

mod exclusion;

pub use exclusion::{ExclusionError, Exclusions};
