//! The calls a function makes into the host: queue sends, topic publishes, commands, message settlements.
//!
//! On wasm they are the component's `edgefn:function/host` import. Natively (unit tests of handlers) there is no
//! host: sends and publishes are recorded in a per-thread outbox that [`crate::testing`] reads, and settlements are
//! recorded too (commands run in-process: see [`crate::invoke()`]).

/// What becomes of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    Ack,
    /// Deliver again after this many milliseconds (0: the consumer's backoff).
    Retry(u64),
    DeadLetter(String),
}

#[cfg(target_family = "wasm")]
mod imp {
    use super::Settlement;
    use crate::abi::bindings::edgefn::function::host;
    use crate::abi::bindings::edgefn::function::types::{SendOptions, Settlement as WitSettlement};

    pub(crate) fn settle(id: &str, settlement: Settlement) {
        let settlement = match settlement {
            Settlement::Ack => WitSettlement::Ack,
            Settlement::Retry(delay) => WitSettlement::Retry(delay),
            Settlement::DeadLetter(reason) => WitSettlement::DeadLetter(reason),
        };
        host::settle(id, &settlement);
    }

    pub(crate) fn send(queue: &str, body: &[u8], delay_ms: u64, priority: i32) -> Result<String, String> {
        host::send(queue, body, SendOptions { delay_ms, priority })
    }

    pub(crate) fn publish(topic: &str, body: &[u8]) -> Result<u32, String> {
        host::publish(topic, body)
    }

    pub(crate) fn invoke(function: &str, payload: &[u8]) -> Result<Vec<u8>, String> {
        host::invoke(function, payload)
    }
}

#[cfg(not(target_family = "wasm"))]
pub(crate) mod imp {
    use super::Settlement;
    use std::cell::RefCell;

    /// A message sent or published natively, for [`crate::testing::outbox`].
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Sent {
        /// `queue` or `topic`.
        pub kind: &'static str,
        pub name: String,
        pub body: Vec<u8>,
        pub delay_ms: u64,
        pub priority: i32,
    }

    thread_local! {
        pub(crate) static OUTBOX: RefCell<Vec<Sent>> = const { RefCell::new(Vec::new()) };
        pub(crate) static SETTLED: RefCell<Vec<(String, Settlement)>> = const { RefCell::new(Vec::new()) };
    }

    pub(crate) fn settle(id: &str, settlement: Settlement) {
        SETTLED.with(|settled| settled.borrow_mut().push((id.to_owned(), settlement)));
    }

    pub(crate) fn send(queue: &str, body: &[u8], delay_ms: u64, priority: i32) -> Result<String, String> {
        OUTBOX.with(|outbox| {
            let mut outbox = outbox.borrow_mut();
            outbox.push(Sent { kind: "queue", name: queue.to_owned(), body: body.to_vec(), delay_ms, priority });
            Ok(outbox.len().to_string())
        })
    }

    pub(crate) fn publish(topic: &str, body: &[u8]) -> Result<u32, String> {
        OUTBOX.with(|outbox| {
            let sent = Sent { kind: "topic", name: topic.to_owned(), body: body.to_vec(), delay_ms: 0, priority: 0 };
            outbox.borrow_mut().push(sent);
        });
        Ok(1)
    }
}

#[cfg(target_family = "wasm")]
pub(crate) use imp::invoke;
pub(crate) use imp::{publish, send, settle};
