use edgefn::prelude::*;
use edgefn::websocket::{self, WebSocketEvent};

#[function(trigger = websocket("/chat/{room}", on = "connect", auth = "main", scopes = ["chat"]))]
fn join(event: WebSocketEvent) -> Result<()> {
    let _room: Option<&str> = event.param("room");
    let _who: Option<&str> = event.subject.as_deref();
    websocket::send(&event.connection_id, "welcome")
}

#[function(trigger = websocket("/chat/{room}", on = "message"))]
fn said(event: WebSocketEvent) -> Result<()> {
    let bytes: Vec<u8> = event.bytes();
    websocket::send_binary(&event.connection_id, &bytes)
}

#[function(trigger = websocket("/chat/{room}", on = "disconnect"))]
fn left(_event: WebSocketEvent) {}

fn main() {
    // Natively, what functions send is kept for tests.
    let event = WebSocketEvent { connection_id: "c1".into(), text: Some("hi".into()), ..Default::default() };
    said(event).expect("sent");
    assert_eq!(edgefn::testing::websocket_sent(), [("c1".to_owned(), b"hi".to_vec())]);
}
