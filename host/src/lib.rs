//! The edgefn host: loads WebAssembly function components, deploys them live with versions, and wires them to
//! triggers.
//!
//! Data flows one way, each layer knowing only those below it:
//!
//! - [`cli`]: the `edgefn` commands; `up` starts a [`node`] and serves it, the others talk to its admin API;
//! - [`admin`]: the admin API, typed requests and responses, errors mapped to statuses in one place;
//! - [`deployments`]: versions, the live set swapped atomically ([`live`]), the artifact cache;
//! - [`triggers`]: HTTP, cron, queue and topic, invoke, each behind one small trait;
//! - [`runtime`]: the one place that configures wasmtime: engine, linker, pool, limits, invocations;
//! - [`capabilities`]: the host side of each guest import (messaging, invoke, environment, outbound HTTP);
//! - [`telemetry`]: the log and usage of what runs (correlation ids, guest output, invocations, host events),
//!   written by a thread of its own into `telemetry.db`;
//! - [`storage`]: SQLite, always off the async threads.
//!
//! [`alarms`] runs the `[[alarms]]` rules over [`telemetry`] and notifies through the queues or a URL.
//!
//! [`layers`] lists the layers, and its test holds every module to them.
//!
//! [`config`] (the host's configuration file), [`component`] (reading a component's manifest), [`assets`] (static
//! files deployed with a component), [`logging`] (the host's own log) and [`priority`] (thread nice values) are leaves any layer may use; [`auth`] (JWT authorizers
//! and host-auth tokens, over [`config`] and [`storage`]) is used by the HTTP trigger, deployments and the admin
//! API; [`node`] is the composition root that wires the layers together.

pub mod admin;
pub mod alarms;
pub mod assets;
pub mod auth;
pub mod capabilities;
pub mod cli;
pub mod component;
pub mod config;
pub mod deployments;
pub mod layers;
pub mod live;
pub mod logging;
pub mod node;
pub mod priority;
pub mod runtime;
pub mod storage;
pub mod telemetry;
pub mod triggers;
