//! Notifications: hoist's events (a new latest tag, a push, a pull
//! request, a failed sync, a rollback, a failed scan) to chat and
//! webhooks, as Flux users set them up — Provider (where) and Alert
//! (which events). The drivers turn their reports into [`Event`]s
//! ([`events`]), the [`Notifier`] routes them through the Alerts, batches
//! them per object and window, and delivers off the pipeline's path.

mod alert;
mod batch;
mod deliver;
mod event;
pub mod events;
mod payload;
mod routes;

pub use alert::{Invalid, Rule, SOURCE_KINDS};
pub use batch::{Batcher, Message};
pub use deliver::{Channel, LogReporter, MIN_GAP, Notifier, Reporter, Routes};
pub use event::{Event, Reason, Severity};
pub use payload::{Outgoing, Target, hmac_sha256, request};
pub use routes::{DEFAULT_WINDOW, SecretLookup, channel, routes};

#[cfg(test)]
mod tests;
