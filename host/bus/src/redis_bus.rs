//! Redis: `PUBLISH` on `ma:events:{tenant}:{stream}` for live fan-out (subscribers use the pattern
//! `ma:events:*`), and `XADD ma:replay:{tenant}:{stream} MAXLEN ~ N` for replay, in one pipeline;
//! detections also on `ma:detections:{tenant}`, the channel a Spin Redis trigger subscribes to.
//! The publishing connection is a `ConnectionManager` (reconnects by itself with backoff); the
//! subscribing connection is re-established by our own loop, which then reports a resubscription.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::{StreamMaxlen, StreamRangeReply};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::{BusError, BusStats, Delivery, Envelope, Event, Result, deliver, reconnect_delay};

const CHANNEL_PREFIX: &str = "ma:events:";
const REPLAY_PREFIX: &str = "ma:replay:";
/// Every detections event of a tenant, on one channel: what a Spin Redis trigger (which subscribes
/// to one named channel, not a pattern) listens to.
const TENANT_DETECTIONS_PREFIX: &str = "ma:detections:";
/// Replay reads at most this many entries.
const REPLAY_MAX: usize = 10_000;

fn redis_error(e: redis::RedisError) -> BusError {
    BusError::Redis(e.to_string())
}

#[derive(Clone)]
pub(crate) struct RedisBus {
    client: redis::Client,
    connection: ConnectionManager,
    replay_len: usize,
}

impl RedisBus {
    pub(crate) async fn connect(url: &str, replay_len: usize) -> Result<Self> {
        let client = redis::Client::open(url).map_err(redis_error)?;
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(100))
            .set_max_delay(Duration::from_secs(2))
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)));
        let connection = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(|e| BusError::Redis(format!("cannot connect to {url}: {e}")))?;
        Ok(Self {
            client,
            connection,
            replay_len,
        })
    }

    pub(crate) async fn publish(&self, envelope: &Envelope) -> Result<()> {
        let stream = envelope.event.stream();
        let payload = envelope.to_json();
        let seq = envelope.event.seq().unwrap_or(0);
        let mut connection = self.connection.clone();
        let mut pipe = redis::pipe();
        pipe.publish(
            format!("{CHANNEL_PREFIX}{}:{stream}", envelope.tenant),
            &payload,
        )
        .ignore();
        if matches!(envelope.event, Event::Detections(_)) {
            pipe.publish(
                format!("{TENANT_DETECTIONS_PREFIX}{}", envelope.tenant),
                &payload,
            )
            .ignore();
        }
        if !envelope.event.for_viewers() {
            // A signal between hosts: nothing to replay to a viewer later.
            return pipe.exec_async(&mut connection).await.map_err(redis_error);
        }
        pipe.xadd_maxlen(
            format!("{REPLAY_PREFIX}{}:{stream}", envelope.tenant),
            StreamMaxlen::Approx(self.replay_len),
            "*",
            &[("seq", seq.to_string().into_bytes()), ("message", payload)],
        )
        .ignore()
        .exec_async(&mut connection)
        .await
        .map_err(redis_error)
    }

    pub(crate) async fn subscribe(
        &self,
        tx: mpsc::Sender<Delivery>,
        stats: Arc<BusStats>,
    ) -> Result<()> {
        // The first subscription must work; later ones are retried for as long as anyone listens.
        let first = self.pubsub().await?;
        let client = self.client.clone();
        tokio::spawn(async move {
            let mut pubsub = Some(first);
            let mut attempt = 0u32;
            loop {
                let Some(mut connection) = pubsub.take() else {
                    tokio::select! {
                        _ = tokio::time::sleep(reconnect_delay(attempt)) => {}
                        _ = tx.closed() => return,
                    }
                    attempt += 1;
                    match open_pubsub(&client).await {
                        Ok(p) => {
                            info!("redis subscription re-established");
                            stats.resubscribed.fetch_add(1, Ordering::Relaxed);
                            attempt = 0;
                            pubsub = Some(p);
                            if tx.send(Delivery::Resubscribed).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            if tx.is_closed() {
                                return;
                            }
                            if attempt == 1 {
                                warn!("redis subscription lost, reconnecting: {e}");
                            }
                        }
                    }
                    continue;
                };
                let mut messages = connection.on_message();
                // Ends with the subscription's receiver, also when nothing is being published.
                while let Some(msg) = tokio::select! {
                    msg = messages.next() => msg,
                    _ = tx.closed() => return,
                } {
                    let from = msg.get_channel_name();
                    if deliver(msg.get_payload_bytes(), from, &stats, &tx)
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                // The stream ended: the connection is gone.
                warn!("redis subscription lost, reconnecting");
            }
        });
        Ok(())
    }

    async fn pubsub(&self) -> Result<redis::aio::PubSub> {
        open_pubsub(&self.client).await
    }

    pub(crate) async fn replay(
        &self,
        tenant: &str,
        stream: &str,
        after: u64,
    ) -> Result<Vec<Envelope>> {
        let mut connection = self.connection.clone();
        let reply: StreamRangeReply = redis::cmd("XRANGE")
            .arg(format!("{REPLAY_PREFIX}{tenant}:{stream}"))
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(REPLAY_MAX)
            .query_async(&mut connection)
            .await
            .map_err(redis_error)?;
        let mut out = Vec::new();
        for entry in reply.ids {
            let seq: u64 = entry
                .get::<String>("seq")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            if seq <= after {
                continue;
            }
            if let Some(bytes) = entry.get::<Vec<u8>>("message") {
                out.push(Envelope::from_json(&bytes)?);
            }
        }
        Ok(out)
    }
}

async fn open_pubsub(client: &redis::Client) -> Result<redis::aio::PubSub> {
    let mut pubsub = tokio::time::timeout(Duration::from_secs(2), client.get_async_pubsub())
        .await
        .map_err(|_| BusError::Redis("connecting timed out".into()))?
        .map_err(redis_error)?;
    pubsub
        .psubscribe(format!("{CHANNEL_PREFIX}*"))
        .await
        .map_err(redis_error)?;
    Ok(pubsub)
}
