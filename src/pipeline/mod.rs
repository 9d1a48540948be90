//! The only module that calls the stages in order: scan (registry, with
//! the store as cache) → select (policy) → rewrite → publish (git).

pub(crate) mod automation;
mod branch;
mod error;
pub mod evidence;
#[cfg(test)]
mod memory;
pub mod ports;
mod scan;

pub use automation::{AutomationReport, RunOptions, Timings, run_automations, selects, selects_in};
pub use error::{AutomationError, ErrorClass, ErrorReport, ScanError};
pub use ports::Ports;
pub use scan::*;

#[cfg(test)]
mod tests;
