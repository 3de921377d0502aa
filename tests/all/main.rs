//! The end-to-end suite, one test binary: real components on real `edgefn up` hosts, over real HTTP, with real
//! SQLite files, a real nats-server, `wasmtime serve` and a headless Chromium. The guest components are built once
//! per run (see `support::component`), for WASI 0.2 and for WASI 0.3.
//!
//! Run it with `bash tests/run.sh`, which finds or installs the tools it needs first. A test whose tool is missing
//! fails and says how to install it; it is skipped only when `EDGEFN_SKIP` names it, and the run then says so.

mod support;

mod assets;
mod automation;
mod cache;
mod cli;
mod cluster;
mod cluster_storage;
mod corpus;
mod deploy;
mod dev;
mod disk;
mod docs;
mod examples;
mod gallery;
mod gateway;
mod http;
mod isolation;
mod new;
mod objects;
mod observability;
mod otel;
mod outcomes;
mod properties;
mod registry;
mod saga;
mod snapshot;
mod state;
mod streaming;
mod streams;
mod websocket;
mod workflows;
