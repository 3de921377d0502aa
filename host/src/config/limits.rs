//! The host's `[limits]`: one flat table in `edgefn.toml`, as users write it, split in code into the part each
//! owner reads, so that no layer takes more of the host's limits than it uses:
//!
//! - [`RuntimeLimits`]: what every invocation runs under and what the runtime enforces around it (deadlines,
//!   memory, the instance pool, loading, fair CPU, output, streamed responses). Owner: `runtime`.
//! - [`HttpLimits`]: connections, request bodies and slow clients. Owner: `triggers::http`.
//! - [`QueueLimits`]: message sizes, queue capacity, what a function may send. Owner: `capabilities::messaging`
//!   (and the runtime hands each invocation its send allowance from it).
//! - [`KvLimits`]: key and value sizes, keys and bytes per store. Owner: `capabilities::kv` (over `storage::kv`).
//! - [`ObjectLimits`]: object sizes, bytes and objects per bucket. Owner: `capabilities::objects`.
//! - [`DeployLimits`]: how long a deploy waits for the old version to drain. Owner: `deployments`.
//!
//! The types live here, in the configuration leaf every layer may use, because the file is parsed here; each owner
//! is handed only its part by the composition root (`node.rs`). A key of `[limits]` belongs to exactly one part;
//! one no part knows is refused, naming it.

use anyhow::bail;
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize};
use std::time::Duration;

/// Every part of `[limits]`; see the module docs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    pub runtime: RuntimeLimits,
    pub http: HttpLimits,
    pub queues: QueueLimits,
    pub kv: KvLimits,
    pub objects: ObjectLimits,
    pub deploys: DeployLimits,
}

/// What every invocation runs under. Owner: `runtime`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeLimits {
    pub timeout_ms: u64,
    pub memory_mb: u64,
    /// Instances that may run at once: the size of the pooling allocator's pool.
    pub max_instances: u32,
    /// How long a request waits for a free instance slot before it gets a 503.
    pub queue_timeout_ms: u64,
    /// Components kept loaded (compiled code mapped, pre-linked) at once; the least recently used goes first.
    pub max_loaded: usize,
    /// A loaded component unused for this long is unloaded.
    pub idle_timeout_ms: u64,
    /// KiB of each pool slot's memory reset in place between instances instead of being released: more makes
    /// warm requests faster (no page faults) and costs resident memory per slot and a little on cold starts.
    pub keep_resident_kib: usize,
    /// Deadline of a component's deploy-time init (`#[edgefn::init]` and the SDK's start-up), which runs once and
    /// may legitimately be far slower than a request; it includes preparing the component for the snapshot.
    pub init_timeout_ms: u64,
    /// The longest `timeout_ms` a component or function may ask for.
    pub max_timeout_ms: u64,
    /// The most memory a component or function may ask for: also what each pool slot reserves.
    pub max_memory_mb: u64,
    /// The host-wide budget of guest linear memory, in MiB; 0 is half the machine's memory.
    pub memory_budget_mb: u64,
    /// Guests that have computed for 10 ms run only on this many threads at once; 0 is half the cores (at least 1).
    pub cpu_lanes: usize,
    /// What one invocation may print (stdout and stderr together); the rest is dropped, and said so.
    pub max_output_bytes: usize,
    /// The longest error text kept (a dead-letter reason, a failed run's error); longer ones are cut, and say so.
    pub max_error_bytes: usize,
    /// How long a WASI 0.3 function may go on streaming its response body, from the start of the request (its
    /// response head must still come within its `timeout_ms`); past it the response is cut short.
    pub stream_timeout_ms: u64,
    /// The most bytes one streamed response body may carry; past it the response is cut short.
    pub max_stream_bytes: u64,
    /// How a freed instance slot's memory is made fresh for the next instance: see [`SlotReset`].
    pub slot_reset: SlotReset,
}

/// How a freed instance slot's memory is reset before another instance (maybe another tenant's) gets it.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum SlotReset {
    /// Reset only the pages the guest touched, found with the kernel's PAGEMAP_SCAN (Linux 6.7+), unless the
    /// machine swaps: wasmtime 48's scan misses a page that was swapped out, which would then keep the previous
    /// instance's data (wasmtime PR #14357, unreleased). Otherwise as `in-place`.
    #[default]
    Auto,
    /// Overwrite the first `keep_resident_kib` of the slot in place and release the rest (madvise): correct
    /// whatever the kernel, a little slower for guests that touch little memory.
    InPlace,
}

/// Connections, request bodies and slow clients. Owner: `triggers::http`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpLimits {
    pub max_body_bytes: usize,
    /// Request bodies buffered at once, all requests together, in MiB; past it new uploads wait, then get 503.
    pub max_buffered_body_mb: u64,
    /// A request body must arrive within this long (408 otherwise).
    pub body_read_timeout_ms: u64,
    /// A request's headers must arrive within this long, or the connection is closed.
    pub header_read_timeout_ms: u64,
    /// A response the client does not read for this long ends the request, and frees its instance.
    pub response_write_timeout_ms: u64,
    /// Bytes of one response the host takes from the function ahead of a slow client, in KiB.
    pub response_buffer_kib: usize,
    /// Client connections open at once; the next ones wait in the kernel's accept queue.
    pub max_connections: usize,
    /// WebSocket connections this node holds at most.
    pub max_websockets: usize,
    /// A WebSocket connection with no message either way for this long is closed (1001).
    pub websocket_idle_timeout_s: u64,
    /// The largest WebSocket message (1009 past it).
    pub websocket_max_message_kb: u64,
    /// The largest WebSocket frame.
    pub websocket_max_frame_kb: u64,
    /// Messages one connection may send per second, with as much burst (1008 past it).
    pub websocket_messages_per_s: u32,
}

/// Message sizes, queue capacity and what a function may send. Owner: `capabilities::messaging`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct QueueLimits {
    /// The largest queue or topic message, in bytes; a bigger one is refused at send.
    pub max_message_bytes: usize,
    /// Messages one invocation may send or publish.
    pub max_sends_per_invocation: u32,
    /// Bytes one invocation may send or publish, all messages together.
    pub max_send_bytes_per_invocation: usize,
    /// Messages one function may send or publish per second, all its invocations together.
    pub max_sends_per_second: u32,
    /// Messages one queue may hold; a send past it is refused (nothing already queued is touched).
    pub max_queue_messages: u64,
    /// Bytes one queue may hold, in MiB.
    pub max_queue_mb: u64,
}

/// Key-value store sizes. Owner: `capabilities::kv`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct KvLimits {
    /// The longest key of a key-value store.
    pub kv_max_key_bytes: usize,
    /// The largest value of a key-value store.
    pub kv_max_value_bytes: usize,
    /// Keys one key-value store may hold.
    pub kv_max_keys: u64,
    /// Bytes one key-value store may hold, in MiB.
    pub kv_max_store_mb: u64,
}

/// Object sizes. Owner: `capabilities::objects` (over `storage::objects`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ObjectLimits {
    /// The largest object, in MiB.
    pub objects_max_object_mb: u64,
    /// Bytes one bucket may hold, in MiB.
    pub objects_max_bucket_mb: u64,
    /// Objects one bucket may hold.
    pub objects_max_objects: u64,
}

/// Deploys. Owner: `deployments`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct DeployLimits {
    /// How long a deploy waits for the old version's cron runs and queue deliveries to finish before it starts the
    /// new version's anyway (the old ones still end by their own deadline, and settle under their own lease).
    pub drain_timeout_ms: u64,
    /// The most a deploy's static files may hold, unpacked.
    pub max_assets_mb: u64,
    /// The most files a deploy's static files may have.
    pub max_asset_files: u32,
}

impl Default for RuntimeLimits {
    fn default() -> Self {
        Self {
            timeout_ms: 30_000,
            memory_mb: 128,
            max_instances: 64,
            queue_timeout_ms: 1_000,
            max_loaded: 256,
            idle_timeout_ms: 300_000,
            keep_resident_kib: 2048,
            init_timeout_ms: 60_000,
            max_timeout_ms: 900_000,
            max_memory_mb: 512,
            memory_budget_mb: 0,
            cpu_lanes: 0,
            max_output_bytes: 1 << 20,
            max_error_bytes: 4096,
            stream_timeout_ms: 900_000,
            max_stream_bytes: 2 << 30,
            slot_reset: SlotReset::Auto,
        }
    }
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 10 << 20,
            max_buffered_body_mb: 256,
            body_read_timeout_ms: 30_000,
            header_read_timeout_ms: 10_000,
            response_write_timeout_ms: 10_000,
            response_buffer_kib: 256,
            max_connections: 4096,
            max_websockets: 10_000,
            websocket_idle_timeout_s: 600,
            websocket_max_message_kb: 128,
            websocket_max_frame_kb: 64,
            websocket_messages_per_s: 100,
        }
    }
}

impl Default for QueueLimits {
    fn default() -> Self {
        Self {
            max_message_bytes: 1 << 20,
            max_sends_per_invocation: 1_000,
            max_send_bytes_per_invocation: 16 << 20,
            max_sends_per_second: 10_000,
            max_queue_messages: 1_000_000,
            max_queue_mb: 1024,
        }
    }
}

impl Default for KvLimits {
    fn default() -> Self {
        Self { kv_max_key_bytes: 1024, kv_max_value_bytes: 1 << 20, kv_max_keys: 1_000_000, kv_max_store_mb: 1024 }
    }
}

impl Default for ObjectLimits {
    fn default() -> Self {
        Self { objects_max_object_mb: 5 * 1024, objects_max_bucket_mb: 100 * 1024, objects_max_objects: 10_000_000 }
    }
}

impl Default for DeployLimits {
    fn default() -> Self {
        Self { drain_timeout_ms: 30_000, max_assets_mb: 256, max_asset_files: 20_000 }
    }
}

impl<'de> Deserialize<'de> for Limits {
    /// The flat `[limits]` table, each key handed to the part that has it (a part's keys are those of its
    /// serialized default, so a new field needs no list kept by hand).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let table = toml::Table::deserialize(deserializer)?;
        let defaults = Limits::default();
        let parts = [
            keys_of(&defaults.runtime),
            keys_of(&defaults.http),
            keys_of(&defaults.queues),
            keys_of(&defaults.kv),
            keys_of(&defaults.deploys),
            keys_of(&defaults.objects),
        ];
        if let Some(unknown) = table.keys().find(|key| !parts.iter().any(|keys| keys.contains(key))) {
            let mut known: Vec<&str> = parts.iter().flatten().map(String::as_str).collect();
            known.sort_unstable();
            return Err(D::Error::custom(format!("unknown field `{unknown}`, expected one of {}", known.join(", "))));
        }
        Ok(Limits {
            runtime: part(&table, &parts[0])?,
            http: part(&table, &parts[1])?,
            queues: part(&table, &parts[2])?,
            kv: part(&table, &parts[3])?,
            deploys: part(&table, &parts[4])?,
            objects: part(&table, &parts[5])?,
        })
    }
}

/// The keys a part of `[limits]` has.
fn keys_of(part: &impl Serialize) -> Vec<String> {
    toml::Table::try_from(part).map(|table| table.keys().cloned().collect()).unwrap_or_default()
}

/// One part, from the keys of `table` that are its own.
fn part<T: DeserializeOwned, E: serde::de::Error>(table: &toml::Table, keys: &[String]) -> Result<T, E> {
    let own: toml::Table =
        table.iter().filter(|(key, _)| keys.contains(key)).map(|(k, v)| (k.clone(), v.clone())).collect();
    T::deserialize(toml::Value::Table(own)).map_err(E::custom)
}

impl Limits {
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        self.runtime.validate()?;
        self.http.validate()?;
        let queues = &self.queues;
        let kv = &self.kv;
        let at_least_one = [
            ("max_sends_per_invocation", queues.max_sends_per_invocation.into()),
            ("max_send_bytes_per_invocation", queues.max_send_bytes_per_invocation as u64),
            ("max_sends_per_second", queues.max_sends_per_second.into()),
            ("max_queue_messages", queues.max_queue_messages),
            ("max_queue_mb", queues.max_queue_mb),
            ("max_message_bytes", queues.max_message_bytes as u64),
            ("kv_max_key_bytes", kv.kv_max_key_bytes as u64),
            ("kv_max_value_bytes", kv.kv_max_value_bytes as u64),
            ("kv_max_keys", kv.kv_max_keys),
            ("kv_max_store_mb", kv.kv_max_store_mb),
            ("objects_max_object_mb", self.objects.objects_max_object_mb),
            ("objects_max_bucket_mb", self.objects.objects_max_bucket_mb),
            ("objects_max_objects", self.objects.objects_max_objects),
        ];
        at_least_one_each(&at_least_one)
    }
}

/// Fails naming the first of `values` that is zero.
fn at_least_one_each(values: &[(&str, u64)]) -> anyhow::Result<()> {
    match values.iter().find(|(_, value)| *value == 0) {
        Some((name, _)) => bail!("limits.{name} must be at least 1"),
        None => Ok(()),
    }
}

impl RuntimeLimits {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    pub fn memory_bytes(&self) -> usize {
        mib_to_bytes(self.memory_mb)
    }

    /// What each pool slot reserves: the most any function may be given.
    pub fn max_memory_bytes(&self) -> usize {
        mib_to_bytes(self.max_memory_mb)
    }

    /// The memory budget in bytes: `memory_budget_mb`, or half the machine's memory.
    pub fn memory_budget_bytes(&self) -> usize {
        match self.memory_budget_mb {
            0 => half_the_machine(),
            mb => mib_to_bytes(mb),
        }
    }

    pub fn init_timeout(&self) -> Duration {
        Duration::from_millis(self.init_timeout_ms)
    }

    pub fn queue_timeout(&self) -> Duration {
        Duration::from_millis(self.queue_timeout_ms)
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }

    pub fn stream_timeout(&self) -> Duration {
        Duration::from_millis(self.stream_timeout_ms)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.timeout_ms == 0 || self.init_timeout_ms == 0 {
            bail!("limits.timeout_ms and limits.init_timeout_ms must be at least 1");
        }
        if self.max_memory_mb == 0 || self.max_memory_mb > 4096 {
            bail!("limits.max_memory_mb must be between 1 and 4096 (a wasm32 memory cannot exceed 4 GiB)");
        }
        if self.memory_mb == 0 || self.memory_mb > self.max_memory_mb {
            bail!("limits.memory_mb must be between 1 and limits.max_memory_mb ({})", self.max_memory_mb);
        }
        if self.timeout_ms > self.max_timeout_ms {
            bail!("limits.timeout_ms ({}) is above limits.max_timeout_ms ({})", self.timeout_ms, self.max_timeout_ms);
        }
        if self.max_instances == 0 || self.max_loaded == 0 {
            bail!("limits.max_instances and limits.max_loaded must be at least 1");
        }
        at_least_one_each(&[
            ("max_output_bytes", self.max_output_bytes as u64),
            ("max_error_bytes", self.max_error_bytes as u64),
            ("stream_timeout_ms", self.stream_timeout_ms),
            ("max_stream_bytes", self.max_stream_bytes),
        ])
    }
}

impl HttpLimits {
    fn validate(&self) -> anyhow::Result<()> {
        at_least_one_each(&[
            ("max_buffered_body_mb", self.max_buffered_body_mb),
            ("body_read_timeout_ms", self.body_read_timeout_ms),
            ("header_read_timeout_ms", self.header_read_timeout_ms),
            ("response_write_timeout_ms", self.response_write_timeout_ms),
            ("response_buffer_kib", self.response_buffer_kib as u64),
            ("max_connections", self.max_connections as u64),
        ])?;
        if self.max_buffered_body_mb.saturating_mul(1 << 20) < self.max_body_bytes as u64 {
            bail!(
                "limits.max_buffered_body_mb ({} MiB) is smaller than one request body may be (limits.max_body_bytes = {})",
                self.max_buffered_body_mb,
                self.max_body_bytes
            );
        }
        Ok(())
    }
}

impl DeployLimits {
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_millis(self.drain_timeout_ms)
    }
}

/// The default memory budget: half the machine's memory, from `/proc/meminfo` (4 GiB when it cannot be read).
fn half_the_machine() -> usize {
    let total_kib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|info| {
        info.lines()
            .find_map(|line| line.strip_prefix("MemTotal:"))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<usize>().ok())
    });
    total_kib.map_or(4 << 30, |kib| kib.saturating_mul(1024) / 2)
}

pub(crate) fn mib_to_bytes(mib: u64) -> usize {
    usize::try_from(mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_of_the_flat_table_reaches_its_part() {
        let limits: Limits = toml::from_str(
            "timeout_ms = 500\nmax_body_bytes = 7\nmax_queue_mb = 3\nkv_max_keys = 9\ndrain_timeout_ms = 11\n",
        )
        .expect("parses");
        assert_eq!(limits.runtime.timeout_ms, 500);
        assert_eq!(limits.runtime.memory_mb, RuntimeLimits::default().memory_mb, "unset keys keep their default");
        assert_eq!(limits.http.max_body_bytes, 7);
        assert_eq!(limits.queues.max_queue_mb, 3);
        assert_eq!(limits.kv.kv_max_keys, 9);
        assert_eq!(limits.deploys.drain_timeout_ms, 11);
        assert_eq!(toml::from_str::<Limits>("").expect("empty"), Limits::default());
    }

    #[test]
    fn a_key_no_part_has_or_a_value_of_the_wrong_type_is_refused_naming_it() {
        let error = toml::from_str::<Limits>("timeout = 5").expect_err("unknown").to_string();
        assert!(error.contains("unknown field `timeout`") && error.contains("timeout_ms"), "{error}");
        let error = toml::from_str::<Limits>("max_connections = \"many\"").expect_err("a string").to_string();
        assert!(error.contains("many"), "{error}");
    }

    #[test]
    fn no_two_parts_share_a_key() {
        let defaults = Limits::default();
        let mut keys = [
            keys_of(&defaults.runtime),
            keys_of(&defaults.http),
            keys_of(&defaults.queues),
            keys_of(&defaults.kv),
            keys_of(&defaults.deploys),
            keys_of(&defaults.objects),
        ]
        .concat();
        let all = keys.len();
        assert!(all > 30, "every part serializes its keys: {keys:?}");
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), all, "a key in two parts would be set in both");
    }
}
