//! Publish authorisation by stream key.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use rtmp::{AuthorizePublish, PublishGrant};
use store::Store;
use tracing::warn;

/// Grants an RTMP publisher the stream whose key it presents (and names the stream's tenant).
pub struct StreamKeys {
    store: Store,
}

impl StreamKeys {
    pub fn new(store: &Store) -> Self {
        Self {
            store: store.clone(),
        }
    }
}

impl AuthorizePublish for StreamKeys {
    fn authorize_publish<'a>(
        &'a self,
        _app: &'a str,
        stream_key: &'a str,
        peer: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = Result<PublishGrant, String>> + Send + 'a>> {
        Box::pin(async move {
            // Never log a whole key: its first characters are enough to tell keys apart.
            let shown: String = stream_key.chars().take(8).collect();
            match self.store.stream_for_key(stream_key).await {
                Ok(Some(stream)) => Ok(PublishGrant {
                    stream: stream.id,
                    owner: stream.tenant_id,
                }),
                Ok(None) => {
                    warn!(%peer, key = %format!("{shown}…"), "unknown stream key");
                    Err("unknown stream key".to_string())
                }
                Err(e) => {
                    warn!(%peer, "stream key lookup failed: {e}");
                    Err("the server cannot check stream keys right now; try again".to_string())
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream's key grants that stream and names its tenant; any other key is refused with a
    /// reason the publisher can read, and the refusal does not echo the key.
    #[tokio::test]
    async fn a_stream_key_grants_its_stream_and_names_its_tenant() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("db.sqlite").display());
        let store = Store::open(&url).await.unwrap();
        let tenant = store.create_tenant("acme").await.unwrap();
        let (stream, key) = store.create_stream(&tenant.id, "main").await.unwrap();
        let keys = StreamKeys::new(&store);
        let peer: SocketAddr = "127.0.0.1:50000".parse().unwrap();

        let grant = keys
            .authorize_publish("live", &key.secret, peer)
            .await
            .unwrap();
        assert_eq!(grant.stream, stream.id);
        assert_eq!(grant.owner, tenant.id);

        let wrong = format!("{}x", key.secret);
        let refused = keys
            .authorize_publish("live", &wrong, peer)
            .await
            .unwrap_err();
        assert_eq!(refused, "unknown stream key");
        store.close().await;
    }
}
