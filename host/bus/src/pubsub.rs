//! Google Cloud Pub/Sub: one topic per kind of event (`{prefix}-detections`, `{prefix}-alert`,
//! `{prefix}-stream`), the stream id as ordering key (a stream's events arrive in order), and one
//! subscription per subscribing host and topic (each API host sees every message), with message
//! ordering on and an expiry so that a crashed host's subscriptions go away by themselves.
//!
//! `PUBSUB_EMULATOR_HOST=HOST:PORT` selects the local emulator (plain HTTP, no credentials);
//! otherwise the clients use real GCP with Application Default Credentials.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use google_cloud_pubsub::client::{Publisher, Subscriber, SubscriptionAdmin, TopicAdmin};
use google_cloud_pubsub::model::Message;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::{BusError, BusStats, Delivery, Envelope, Result, deliver, reconnect_delay};

const KINDS: [&str; 5] = ["detections", "alert", "stream", "pipeline", "control"];

fn pubsub_error(what: &str, e: impl std::fmt::Display) -> BusError {
    BusError::PubSub(format!("{what}: {e}"))
}

/// Points a client builder at the emulator (plain HTTP, anonymous) when there is one.
macro_rules! configure {
    ($builder:expr, $emulator:expr) => {{
        let builder = $builder;
        match $emulator {
            Some(host) => builder
                .with_endpoint(format!("http://{host}"))
                .with_credentials(
                    google_cloud_auth::credentials::anonymous::Builder::new().build(),
                ),
            None => builder,
        }
    }};
}
pub(crate) use configure;

#[derive(Clone)]
pub(crate) struct PubSubBus {
    project: String,
    prefix: String,
    emulator: Option<String>,
    publishers: Arc<HashMap<&'static str, Publisher>>,
}

impl PubSubBus {
    pub(crate) async fn connect(
        project: &str,
        prefix: &str,
        emulator: Option<&str>,
    ) -> Result<Self> {
        let topics = configure!(TopicAdmin::builder(), emulator)
            .build()
            .await
            .map_err(|e| pubsub_error("topic client", e))?;
        let mut publishers = HashMap::new();
        for kind in KINDS {
            let topic = format!("projects/{project}/topics/{prefix}-{kind}");
            match topics.create_topic().set_name(&topic).send().await {
                Ok(_) => info!(%topic, "created Pub/Sub topic"),
                Err(e) if already_exists(&e) => {}
                Err(e) => return Err(pubsub_error(&format!("creating {topic}"), e)),
            }
            let publisher = configure!(Publisher::builder(topic.clone()), emulator)
                .set_delay_threshold(Duration::from_millis(5))
                .build()
                .await
                .map_err(|e| pubsub_error(&format!("publisher for {topic}"), e))?;
            publishers.insert(kind, publisher);
        }
        Ok(Self {
            project: project.to_string(),
            prefix: prefix.to_string(),
            emulator: emulator.map(str::to_string),
            publishers: Arc::new(publishers),
        })
    }

    pub(crate) async fn publish(&self, envelope: &Envelope) -> Result<()> {
        let kind = envelope.event.kind();
        let publisher = self
            .publishers
            .get(kind)
            .ok_or_else(|| BusError::PubSub(format!("no topic for {kind}")))?;
        let stream = envelope.event.stream().to_string();
        let message = Message::new()
            .set_data(bytes::Bytes::from(envelope.to_json()))
            .set_ordering_key(stream.clone())
            .set_attributes([
                ("v", crate::VERSION.to_string()),
                ("tenant", envelope.tenant.clone()),
                ("stream", stream.clone()),
            ]);
        match tokio::time::timeout(Duration::from_secs(10), publisher.publish(message)).await {
            Ok(Ok(_id)) => Ok(()),
            Ok(Err(e)) => {
                // A failed ordered publish pauses the key; later messages may go again.
                publisher.resume_publish(stream);
                Err(pubsub_error("publishing", e))
            }
            Err(_) => {
                publisher.resume_publish(stream);
                Err(BusError::PubSub("publishing timed out".into()))
            }
        }
    }

    pub(crate) async fn subscribe(
        &self,
        tx: mpsc::Sender<Delivery>,
        stats: Arc<BusStats>,
    ) -> Result<()> {
        let emulator = self.emulator.as_deref();
        let admin = configure!(SubscriptionAdmin::builder(), emulator)
            .build()
            .await
            .map_err(|e| pubsub_error("subscription client", e))?;
        let subscriber = configure!(Subscriber::builder(), emulator)
            .build()
            .await
            .map_err(|e| pubsub_error("subscriber client", e))?;
        let host = format!("{:016x}", rand::random::<u64>());
        for kind in KINDS {
            let topic = format!("projects/{}/topics/{}-{kind}", self.project, self.prefix);
            let name = format!(
                "projects/{}/subscriptions/{}-{kind}-{host}",
                self.project, self.prefix
            );
            let ttl = google_cloud_wkt::Duration::clamp(86_400, 0); // the shortest GCP allows
            admin
                .create_subscription()
                .set_name(&name)
                .set_topic(&topic)
                .set_enable_message_ordering(true)
                .set_ack_deadline_seconds(10)
                .set_expiration_policy(
                    google_cloud_pubsub::model::ExpirationPolicy::new().set_ttl(ttl),
                )
                .send()
                .await
                .map_err(|e| pubsub_error(&format!("creating {name}"), e))?;
            tokio::spawn(receive(
                subscriber.clone(),
                admin.clone(),
                name,
                tx.clone(),
                stats.clone(),
            ));
        }
        Ok(())
    }
}

/// Pulls one subscription until nobody listens, re-opening the stream after errors; then deletes
/// the subscription.
async fn receive(
    subscriber: Subscriber,
    admin: SubscriptionAdmin,
    name: String,
    tx: mpsc::Sender<Delivery>,
    stats: Arc<BusStats>,
) {
    let mut attempt = 0u32;
    'open: loop {
        let mut stream = subscriber
            .subscribe(name.clone())
            .set_max_outstanding_messages(1000)
            .build();
        loop {
            let next = tokio::select! {
                next = stream.next() => next,
                _ = tx.closed() => break 'open,
            };
            match next {
                Some(Ok((message, handler))) => {
                    handler.ack();
                    attempt = 0;
                    if deliver(&message.data, &name, &stats, &tx).await.is_err() {
                        break 'open;
                    }
                }
                Some(Err(e)) => {
                    if attempt == 0 {
                        warn!(subscription = %name, "Pub/Sub stream failed, re-opening: {e}");
                    }
                    break;
                }
                None => break,
            }
        }
        tokio::time::sleep(reconnect_delay(attempt)).await;
        attempt += 1;
        stats.resubscribed.fetch_add(1, Ordering::Relaxed);
        if tx.send(Delivery::Resubscribed).await.is_err() {
            break;
        }
        continue 'open;
    }
    if let Err(e) = admin
        .delete_subscription()
        .set_subscription(&name)
        .send()
        .await
    {
        warn!(subscription = %name, "could not delete the subscription (it expires by itself): {e}");
    }
}

pub(crate) fn already_exists(e: &google_cloud_pubsub::Error) -> bool {
    e.http_status_code() == Some(409)
        || e.status()
            .is_some_and(|s| s.code == google_cloud_gax::error::rpc::Code::AlreadyExists)
}
