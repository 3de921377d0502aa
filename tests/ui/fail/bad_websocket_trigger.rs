use edgefn::prelude::*;
use edgefn::websocket::WebSocketEvent;

#[function(trigger = websocket("/chat"))]
fn no_event(_event: WebSocketEvent) -> Result<()> {
    Ok(())
}

#[function(trigger = websocket("/chat", on = "open"))]
fn unknown_event(_event: WebSocketEvent) -> Result<()> {
    Ok(())
}

#[function(trigger = websocket("/chat", on = "message", method = "GET"))]
fn unknown_key(_event: WebSocketEvent) -> Result<()> {
    Ok(())
}

#[function(trigger = websocket("chat", on = "message"))]
fn bad_route(_event: WebSocketEvent) -> Result<()> {
    Ok(())
}

fn main() {}
