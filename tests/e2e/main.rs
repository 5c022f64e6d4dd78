//! End-to-end tests: real Wasm guests built from guests/, run by the real
//! `wpod` binary and through the library, with real files and sockets.
//!
//! Each test module covers one capability; `support` holds the helpers.

mod support;

mod containers;
mod detached;
mod docs;
mod errors;
mod examples;
mod hardening;
mod http;
mod images;
mod jobs;
mod library;
mod lifecycle;
mod manifest;
mod memory;
mod network;
mod probes;
mod registry;
mod sandbox;
mod sandbox_elsewhere;
mod tiered;
mod volumes;
mod wasip3;
