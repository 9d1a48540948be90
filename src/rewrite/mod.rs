//! The rewrite stage: set the values that Flux's setter markers point at
//! to the policies' latest refs, changing those scalars' bytes and nothing
//! else.
//!
//! [`text::rewrite`] is pure (text in, text and edits out); [`tree`] walks
//! a directory and writes files atomically.

mod marker;
mod scalar;
mod text;
mod tree;

pub use marker::{Field, Marker};
pub use scalar::{Style, plain_is_safe, render};
pub use text::{Problem, Refs, Rewritten, rewrite};
pub use tree::{FileProblem, RewriteError, TreeRewrite, rewrite_tree};

#[cfg(test)]
mod props;
