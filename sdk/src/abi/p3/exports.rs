//! The component's exports besides HTTP: `wizer-initialize` and the `async-handler` interface (cron, queue, topic
//! and invoke functions), handed to the SDK's dispatchers, each call polled under its own correlation id.

use crate::abi::bindings::Guest;
use crate::abi::bindings::exports::edgefn::function::async_handler;
use crate::rt::Scoped;

struct Component;

impl Guest for Component {
    fn wizer_initialize() {
        crate::init::before_snapshot();
    }
}

wit_records!(crate::abi::bindings::edgefn::function::types);

impl async_handler::Guest for Component {
    async fn on_cron(event: async_handler::CronEvent) -> Result<(), String> {
        let id = event.correlation_id.clone();
        let (function, event) = cron_event(event);
        Scoped::new(id, crate::handlers::run_cron_async(function, event)).await
    }

    async fn on_messages(delivery: async_handler::Delivery) -> Result<(), String> {
        let messages = raw_messages(delivery.messages);
        let run = crate::handlers::run_messages_async(delivery.function, delivery.source, messages);
        Scoped::new(delivery.correlation_id, run).await
    }

    async fn on_invoke(function: String, payload: Vec<u8>, correlation_id: String) -> Result<Vec<u8>, String> {
        Scoped::new(correlation_id, crate::handlers::run_invoke_async(function, payload)).await
    }
}

crate::abi::bindings::export!(Component with_types_in crate::abi::bindings);
