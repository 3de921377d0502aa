//! Purges across a cluster: every node's response cache is its own, so a purge made on one node (from a function,
//! the CLI or the admin API, or a successful write through a route) is published on the cluster's NATS server
//! (`edgefn.cache.purge`, core publish, nothing stored) and every other node applies it to its own cache. A node
//! that is away when a purge goes by misses it; its entries still expire by their own `max-age`, and a deploy purges
//! the component on every node anyway.

use super::{Purge, ResponseCache};
use async_nats::HeaderMap;
use futures_util::StreamExt as _;
use std::sync::Arc;

const SUBJECT: &str = "edgefn.cache.purge";
const COMPONENT: &str = "Edgefn-Component";
const KIND: &str = "Edgefn-Purge";
/// The node process that made the purge (it has applied it already).
const ORIGIN: &str = "Edgefn-Origin";

fn encode(component: &str, purge: &Purge, origin: &str) -> (HeaderMap, Vec<u8>) {
    let mut headers = HeaderMap::new();
    headers.insert(COMPONENT, component);
    headers.insert(ORIGIN, origin);
    let (kind, value) = match purge {
        Purge::Path(path) => ("path", path.as_bytes().to_vec()),
        Purge::Tag(tag) => ("tag", tag.as_bytes().to_vec()),
        Purge::All => ("all", Vec::new()),
    };
    headers.insert(KIND, kind);
    (headers, value)
}

/// The component and purge of a message, and the node that made it; `None` for one that does not decode.
fn decode(headers: Option<&HeaderMap>, payload: &[u8]) -> Option<(String, Purge, String)> {
    let header = |name: &str| headers?.get(name).map(|value| value.as_str().to_owned());
    let value = || String::from_utf8(payload.to_vec()).ok();
    let purge = match header(KIND)?.as_str() {
        "path" => Purge::Path(value()?),
        "tag" => Purge::Tag(value()?),
        "all" => Purge::All,
        _ => return None,
    };
    Some((header(COMPONENT)?, purge, header(ORIGIN)?))
}

/// Joins `cache` to the cluster's purges: what it purges goes to the other nodes, what they purge is applied to it.
/// Subscribed before it returns, so no purge published after the node has started is missed.
pub async fn join(client: async_nats::Client, cache: &Arc<ResponseCache>) -> Result<(), String> {
    let origin = uuid::Uuid::new_v4().simple().to_string();
    let mut purges = client
        .subscribe(SUBJECT)
        .await
        .map_err(|error| format!("subscribe to {SUBJECT} on the cluster's NATS server: {error}"))?;
    let (outgoing, mut to_publish) = tokio::sync::mpsc::unbounded_channel::<(String, Purge)>();
    if cache.peers.set(outgoing).is_err() {
        return Err("the response cache has joined the cluster's purges already".into());
    }
    let publisher = (client, origin.clone());
    tokio::spawn(async move {
        let (client, origin) = publisher;
        while let Some((component, purge)) = to_publish.recv().await {
            let (headers, payload) = encode(&component, &purge, &origin);
            if let Err(error) = client.publish_with_headers(SUBJECT, headers, payload.into()).await {
                tracing::warn!(%component, ?purge, %error, "a cache purge did not reach the cluster's other nodes");
            }
        }
    });
    let cache = Arc::downgrade(cache);
    tokio::spawn(async move {
        while let Some(message) = purges.next().await {
            let Some(cache) = cache.upgrade() else { break };
            match decode(message.headers.as_ref(), &message.payload) {
                Some((_, _, from)) if from == origin => {}
                Some((component, purge, _)) => {
                    cache.purge_here(&component, &purge);
                }
                None => tracing::warn!("a cache purge from the cluster that does not decode was ignored"),
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_purge_travels_unchanged() {
        for purge in [Purge::Path("/products/*".into()), Purge::Tag("greetings".into()), Purge::All] {
            let (headers, payload) = encode("shop", &purge, "node-1");
            assert_eq!(decode(Some(&headers), &payload), Some(("shop".into(), purge, "node-1".into())));
        }
        assert_eq!(decode(None, b"/a"), None);
    }
}
