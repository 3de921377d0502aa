//! The trigger manifest: what the `#[function]` macro writes into a component and what the host reads back.
//!
//! Three pieces of pure logic live here because the macro, the SDK and the host must agree on them byte for byte:
//!
//! - [`record`]: a function's name and trigger, and the self-delimiting, versioned binary records that carry it in
//!   the component's `edgefn-manifest` custom section.
//! - [`route`]: route patterns such as `/hello/{name}` or `/files/{*path}`: parsing (with errors the macro shows to
//!   the user), matching, and the "same shape" key that tells two routes apart.
//! - [`router`]: a route table with method handling (404 versus 405) and most-specific-match ordering. The guest
//!   uses it to dispatch inside a component, the host to pick the component; both route the same way, which is what
//!   makes a component answer identically under `edgefn` and under `wasmtime serve`.
//!
//! - [`scopes`]: which scopes a verified token grants and whether a route's list is met, so the host and native
//!   tests refuse the same requests.
//! - [`schedule`] (feature `schedule`): cron expressions in IANA time zones, with daylight-saving rules.
//! - [`workflow`]: what the host and a workflow function exchange on each resume of a run (the journal).
//!
//! ```
//! use edgefn_manifest::record::{FunctionRecord, Trigger, decode_section, encode_record};
//!
//! let record = FunctionRecord {
//!     name: "hello".into(),
//!     trigger: Trigger::Http { route: "/hello/{name}".into(), method: "GET".into(), auth: None },
//! };
//! let mut section = encode_record(&record);
//! section.extend(encode_record(&record));
//! assert_eq!(decode_section(&section).unwrap(), vec![record.clone(), record]);
//! ```

pub mod record;
pub mod route;
pub mod router;
#[cfg(feature = "schedule")]
pub mod schedule;
pub mod scopes;
pub mod workflow;

/// Name of the custom section that holds the manifest records.
pub const SECTION_NAME: &str = "edgefn-manifest";
