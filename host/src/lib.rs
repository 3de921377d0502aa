//! The edgefn host: loads WebAssembly function components and wires them to triggers.
//!
//! Data flows one way: [`cli`] parses what the user asked for; [`deploy`] resolves each source (building crates
//! with [`build`]), reads its manifest ([`component`]), compiles it into the [`registry`]'s artifact cache with the [`runtime`]
//! (the one place that configures wasmtime) and records it in [`storage`]; [`triggers`] then serve it, loading
//! components on demand through the registry. [`config`] holds the limits and
//! per-component settings.
//!
//! The triggers that are not HTTP live in the [`platform`]: durable [`queue`]s and topics, [`cron`] schedules and
//! `invoke`, all on SQLite, reachable by functions (through their `edgefn:function/host` import) and by operators
//! (through the [`admin`] API).

pub mod admin;
pub mod build;
pub mod cli;
pub mod component;
pub mod config;
pub mod cron;
pub mod deploy;
pub mod platform;
pub mod queue;
pub mod registry;
pub mod runtime;
pub mod storage;
pub mod triggers;
