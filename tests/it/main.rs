//! hoist's integration tests: one binary, so the crate links once.

mod chart;
mod cli;
mod cluster_controller;
mod cluster_flux;
mod cluster_sync;
mod controller;
mod deploy;
mod forge;
mod fuzz_corpus;
mod generated;
mod git;
mod gotemplate;
mod helm_charts;
mod identity;
mod image;
mod kube_api;
mod masterminds;
mod notify;
mod rewrite;
mod rollout;
mod run;
mod scan;
mod support;
mod terminal;
mod verify;
mod webhook;
