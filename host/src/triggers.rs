//! Triggers: what makes the host invoke a function. Each kind lives in its own module and only talks to the
//! runtime and the deployed components, never to another trigger.

pub mod http;
