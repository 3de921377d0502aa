//! The component's exports: `wizer-initialize` and the `handler` interface (cron, queue, topic and invoke
//! functions), handed to the SDK's dispatchers. Kept apart from `bindings.rs` so that the generated bindings import
//! nothing of the SDK: the SDK's modules call the imports, and this module calls the SDK's modules.

use crate::abi::bindings::Guest;
use crate::abi::bindings::exports::edgefn::function::handler;

struct Component;

impl Guest for Component {
    fn wizer_initialize() {
        crate::init::before_snapshot();
    }
}

wit_records!(crate::abi::bindings::edgefn::function::types);

impl handler::Guest for Component {
    fn on_cron(event: handler::CronEvent) -> Result<(), String> {
        crate::dispatch::set_correlation_id(&event.correlation_id);
        let (function, event) = cron_event(event);
        crate::handlers::run_cron(&function, event)
    }

    fn on_messages(delivery: handler::Delivery) -> Result<(), String> {
        crate::dispatch::set_correlation_id(&delivery.correlation_id);
        crate::handlers::run_messages(&delivery.function, delivery.source, raw_messages(delivery.messages))
    }

    fn on_invoke(function: String, payload: Vec<u8>, correlation_id: String) -> Result<Vec<u8>, String> {
        crate::dispatch::set_correlation_id(&correlation_id);
        crate::handlers::run_invoke(&function, &payload)
    }
}

crate::abi::bindings::export!(Component with_types_in crate::abi::bindings);
