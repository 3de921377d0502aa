//! The component's exports: `wizer-initialize` and the `handler` interface (cron, queue, topic and invoke
//! functions), handed to the SDK's dispatchers. Kept apart from `bindings.rs` so that the generated bindings import
//! nothing of the SDK: the SDK's modules call the imports, and this module calls the SDK's modules.

use crate::bindings::Guest;
use crate::bindings::exports::edgefn::function::handler;
use crate::cron::CronEvent;
use crate::queue::RawMessage;

struct Component;

impl Guest for Component {
    fn wizer_initialize() {
        // Everything an instance would otherwise build on its first request goes into the snapshot too.
        crate::dispatch::warm_up();
        if let Err(error) = crate::init::ensure() {
            // The host reports this line as the reason the deploy was refused.
            eprintln!("edgefn: {error}");
            std::process::abort();
        }
    }
}

impl handler::Guest for Component {
    fn on_cron(event: handler::CronEvent) -> Result<(), String> {
        let handler::CronEvent {
            function,
            expression,
            timezone,
            scheduled_at,
            fired_at,
            attempt,
            reason,
            correlation_id,
        } = event;
        crate::dispatch::set_correlation_id(&correlation_id);
        let event = CronEvent {
            expression,
            timezone,
            scheduled_at_ms: scheduled_at,
            fired_at_ms: fired_at,
            attempt,
            reason,
            correlation_id,
        };
        crate::handlers::run_cron(&function, event)
    }

    fn on_messages(delivery: handler::Delivery) -> Result<(), String> {
        crate::dispatch::set_correlation_id(&delivery.correlation_id);
        let messages = delivery
            .messages
            .into_iter()
            .map(|m| RawMessage {
                id: m.id,
                body: m.body,
                attempts: m.attempts,
                priority: m.priority,
                enqueued_at_ms: m.enqueued_at,
                correlation_id: m.correlation_id,
            })
            .collect();
        crate::handlers::run_messages(&delivery.function, delivery.source, messages)
    }

    fn on_invoke(function: String, payload: Vec<u8>, correlation_id: String) -> Result<Vec<u8>, String> {
        crate::dispatch::set_correlation_id(&correlation_id);
        crate::handlers::run_invoke(&function, &payload)
    }
}

crate::bindings::export!(Component with_types_in crate::bindings);
