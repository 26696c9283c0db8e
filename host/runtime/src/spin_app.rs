//! `spin.toml` (manifest version 2) with Redis triggers, run by this host instead of the Spin
//! runtime: each `[[trigger.redis]]` subscribes to its channel on its Redis address, and every
//! message calls its component ([`crate::spin::SpinHost`]) in a fresh sandboxed instance, one
//! message at a time per address, in the order Redis delivered them (as Spin does).
//!
//! Variables follow Spin: application `[variables]` with defaults, overridden by
//! `SPIN_VARIABLE_<NAME>` in the environment or by the caller; `{{ name }}` in a trigger's address
//! and channel and in a component's variables and `allowed_outbound_hosts` is replaced by the
//! application variable's value. Only Redis triggers are run; a manifest without one is an error.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Deserialize;

use crate::Runtime;
use crate::spin::{SpinHost, SpinRedisComponent, SpinScope};

/// A manifest larger than this is refused before it is parsed.
const MAX_MANIFEST_BYTES: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SpinError(pub String);

type Result<T> = std::result::Result<T, SpinError>;

fn err<T>(message: impl Into<String>) -> Result<T> {
    Err(SpinError(message.into()))
}

#[derive(Debug, Deserialize)]
struct Manifest {
    spin_manifest_version: u32,
    application: Application,
    #[serde(default)]
    variables: HashMap<String, Variable>,
    #[serde(default)]
    trigger: Triggers,
    #[serde(default)]
    component: HashMap<String, ComponentSection>,
}

#[derive(Debug, Deserialize)]
struct Application {
    name: String,
    #[serde(default)]
    trigger: ApplicationTriggers,
}

#[derive(Debug, Default, Deserialize)]
struct ApplicationTriggers {
    #[serde(default)]
    redis: Option<ApplicationRedis>,
}

#[derive(Debug, Deserialize)]
struct ApplicationRedis {
    address: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Variable {
    default: Option<String>,
    #[serde(default)]
    required: bool,
}

#[derive(Debug, Default, Deserialize)]
struct Triggers {
    #[serde(default)]
    redis: Vec<RedisTriggerSection>,
}

#[derive(Debug, Deserialize)]
struct RedisTriggerSection {
    channel: String,
    component: String,
    address: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ComponentSection {
    source: String,
    #[serde(default)]
    allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    variables: HashMap<String, String>,
}

/// A component subscribed to a channel.
pub struct Subscription {
    pub component_id: String,
    pub address: String,
    pub channel: String,
    component: SpinRedisComponent,
    scope: SpinScope,
}

/// A loaded Spin application: its Redis subscriptions and what they handled.
pub struct SpinApp {
    pub name: String,
    pub subscriptions: Vec<Subscription>,
    /// Messages handled without an error, and with one (the component's or the sandbox's).
    pub handled: AtomicU64,
    pub failed: AtomicU64,
}

/// Replaces each `{{ name }}` in `text` with the application variable `name`.
fn resolve(text: &str, values: &HashMap<String, String>, what: &str) -> Result<String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find("}}") else {
            return err(format!("{what}: an unclosed '{{{{' in {text:?}"));
        };
        let name = rest[start + 2..start + end].trim();
        match values.get(name) {
            Some(value) => out.push_str(value),
            None => {
                return err(format!(
                    "{what}: the variable '{name}' is not defined in [variables] (or has no value)"
                ));
            }
        }
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The application variables' values: `overrides`, then `SPIN_VARIABLE_<NAME>`, then defaults.
fn variable_values(
    manifest: &Manifest,
    overrides: &HashMap<String, String>,
) -> Result<HashMap<String, String>> {
    let mut values = HashMap::new();
    for (name, variable) in &manifest.variables {
        let from_env = std::env::var(format!("SPIN_VARIABLE_{}", name.to_uppercase())).ok();
        match overrides
            .get(name)
            .cloned()
            .or(from_env)
            .or_else(|| variable.default.clone())
        {
            Some(value) => {
                values.insert(name.clone(), value);
            }
            None if variable.required => {
                return err(format!(
                    "the variable '{name}' is required: give it with --variable {name}=VALUE or SPIN_VARIABLE_{}",
                    name.to_uppercase()
                ));
            }
            None => {}
        }
    }
    for name in overrides.keys() {
        if !manifest.variables.contains_key(name) {
            return err(format!(
                "--variable {name}: the manifest has no such variable"
            ));
        }
    }
    Ok(values)
}

/// Where a component's `source` is: next to the manifest, or (by its file name) in
/// `component_dir` when given and the file is there.
fn source_path(manifest_dir: &Path, source: &str, component_dir: Option<&Path>) -> PathBuf {
    if let Some(dir) = component_dir
        && let Some(name) = Path::new(source).file_name()
        && dir.join(name).is_file()
    {
        return dir.join(name);
    }
    manifest_dir.join(source)
}

impl SpinApp {
    /// Reads `manifest` and loads its Redis-triggered components into `host`.
    pub fn load(
        manifest: &Path,
        overrides: &HashMap<String, String>,
        component_dir: Option<&Path>,
        runtime: &Runtime,
        host: &SpinHost,
    ) -> Result<Self> {
        let shown = manifest.display();
        let size = std::fs::metadata(manifest)
            .map_err(|e| SpinError(format!("{shown}: {e}")))?
            .len();
        if size > MAX_MANIFEST_BYTES {
            return err(format!("{shown}: {size} bytes, over {MAX_MANIFEST_BYTES}"));
        }
        let text =
            std::fs::read_to_string(manifest).map_err(|e| SpinError(format!("{shown}: {e}")))?;
        let parsed: Manifest =
            toml::from_str(&text).map_err(|e| SpinError(format!("{shown}: {e}")))?;
        if parsed.spin_manifest_version != 2 {
            return err(format!(
                "{shown}: spin_manifest_version {} (this host reads 2)",
                parsed.spin_manifest_version
            ));
        }
        if parsed.trigger.redis.is_empty() {
            return err(format!("{shown}: no [[trigger.redis]]: nothing to run"));
        }
        let values = variable_values(&parsed, overrides)?;
        let default_address = parsed
            .application
            .trigger
            .redis
            .as_ref()
            .and_then(|r| r.address.clone());
        let dir = manifest.parent().unwrap_or(Path::new("."));
        let mut loaded: HashMap<String, (SpinRedisComponent, SpinScope)> = HashMap::new();
        let mut subscriptions = Vec::new();
        for trigger in &parsed.trigger.redis {
            let id = &trigger.component;
            let Some(section) = parsed.component.get(id) else {
                return err(format!(
                    "[[trigger.redis]] names the component '{id}', which [component] lacks"
                ));
            };
            let Some(address) = trigger.address.clone().or_else(|| default_address.clone()) else {
                return err(format!(
                    "[[trigger.redis]] for '{id}': no address (set [application.trigger.redis] address)"
                ));
            };
            let address = resolve(&address, &values, "the Redis address")?;
            let channel = resolve(&trigger.channel, &values, "the channel")?;
            if !loaded.contains_key(id) {
                let path = source_path(dir, &section.source, component_dir);
                let bytes = std::fs::read(&path)
                    .map_err(|e| SpinError(format!("component '{id}': {}: {e}", path.display())))?;
                let component = host.load(runtime, &bytes).map_err(|e| {
                    SpinError(format!("component '{id}' ({}): {e}", path.display()))
                })?;
                let mut variables = HashMap::new();
                for (name, template) in &section.variables {
                    variables.insert(
                        name.clone(),
                        resolve(
                            template,
                            &values,
                            &format!("component '{id}' variable {name}"),
                        )?,
                    );
                }
                let allowed_outbound_hosts = section
                    .allowed_outbound_hosts
                    .iter()
                    .map(|h| {
                        resolve(
                            h,
                            &values,
                            &format!("component '{id}' allowed_outbound_hosts"),
                        )
                    })
                    .collect::<Result<Vec<_>>>()?;
                let scope = SpinScope {
                    variables,
                    allowed_outbound_hosts,
                    connections: 0,
                };
                loaded.insert(id.clone(), (component, scope));
            }
            let (component, scope) = loaded[id].clone();
            subscriptions.push(Subscription {
                component_id: id.clone(),
                address,
                channel,
                component,
                scope,
            });
        }
        Ok(Self {
            name: parsed.application.name,
            subscriptions,
            handled: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        })
    }

    /// Subscribes to every trigger's channel and handles messages until the task is dropped.
    /// `subscribed` is called once every address's subscriptions are in place (the first time).
    /// A lost connection is made again after a second; messages published meanwhile are lost,
    /// as with any Redis pub/sub subscriber.
    pub async fn run(
        self: Arc<Self>,
        runtime: Arc<Runtime>,
        host: Arc<SpinHost>,
        subscribed: impl FnOnce() + Send + 'static,
    ) -> Result<()> {
        let mut addresses: Vec<String> = self
            .subscriptions
            .iter()
            .map(|s| s.address.clone())
            .collect();
        addresses.sort();
        addresses.dedup();
        let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(addresses.len());
        let mut tasks = tokio::task::JoinSet::new();
        for address in addresses.clone() {
            let (app, runtime, host, ready) = (
                self.clone(),
                runtime.clone(),
                host.clone(),
                ready_tx.clone(),
            );
            tasks.spawn(async move { app.listen(address, runtime, host, ready).await });
        }
        drop(ready_tx);
        let mut waiting = addresses.len();
        while waiting > 0 {
            match ready_rx.recv().await {
                Some(()) => waiting -= 1,
                None => break,
            }
        }
        subscribed();
        match tasks.join_next().await {
            Some(Ok(result)) => result,
            Some(Err(e)) => err(format!("a subscriber stopped: {e}")),
            None => Ok(()),
        }
    }

    async fn listen(
        &self,
        address: String,
        runtime: Arc<Runtime>,
        host: Arc<SpinHost>,
        ready: tokio::sync::mpsc::Sender<()>,
    ) -> Result<()> {
        use futures_util::StreamExt;
        let client = ::redis::Client::open(address.as_str())
            .map_err(|e| SpinError(format!("Redis address {address}: {e}")))?;
        let mut announced = false;
        loop {
            let mut pubsub = match client.get_async_pubsub().await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!("Spin trigger: cannot connect to {address}: {e}; again in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let mut failed = false;
            for s in self.subscriptions.iter().filter(|s| s.address == address) {
                if let Err(e) = pubsub.subscribe(&s.channel).await {
                    tracing::warn!("Spin trigger: cannot subscribe to {}: {e}", s.channel);
                    failed = true;
                }
            }
            if failed {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            tracing::info!(app = %self.name, "Spin trigger: listening on {address}");
            if !announced {
                announced = true;
                let _ = ready.send(()).await;
            }
            let mut messages = pubsub.on_message();
            while let Some(message) = messages.next().await {
                let channel = message.get_channel_name().to_string();
                let payload = message.get_payload_bytes().to_vec();
                for s in self
                    .subscriptions
                    .iter()
                    .filter(|s| s.address == address && s.channel == channel)
                {
                    self.deliver(s, &payload, &runtime, &host).await;
                }
            }
            tracing::warn!("Spin trigger: the connection to {address} was lost; again in 1 s");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn deliver(
        &self,
        s: &Subscription,
        payload: &[u8],
        runtime: &Arc<Runtime>,
        host: &Arc<SpinHost>,
    ) {
        let (runtime, host, component, scope, payload) = (
            runtime.clone(),
            host.clone(),
            s.component.clone(),
            s.scope.clone(),
            payload.to_vec(),
        );
        let call = tokio::task::spawn_blocking(move || {
            host.handle_message(&runtime, &component, &scope, &payload)
        })
        .await;
        match call {
            Ok(call) => {
                for line in &call.log {
                    tracing::info!(component = %s.component_id, "{line}");
                }
                match call.result {
                    Ok(()) => self.handled.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        tracing::warn!(component = %s.component_id, channel = %s.channel, "Spin handler failed: {e}");
                        self.failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
            Err(e) => {
                tracing::error!(component = %s.component_id, "Spin handler task: {e}");
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("component", &self.component_id)
            .field("address", &self.address)
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_resolve_and_unknown_names_are_errors() {
        let values = HashMap::from([("redis_address".to_string(), "redis://h:1".to_string())]);
        assert_eq!(
            resolve("{{ redis_address }}/0", &values, "x").unwrap(),
            "redis://h:1/0"
        );
        assert_eq!(resolve("plain", &values, "x").unwrap(), "plain");
        assert!(
            resolve("{{ nope }}", &values, "x")
                .unwrap_err()
                .0
                .contains("nope")
        );
        assert!(resolve("{{ open", &values, "x").is_err());
    }

    #[test]
    fn variables_take_overrides_then_defaults_and_required_ones_must_be_given() {
        let manifest: Manifest = toml::from_str(
            r#"
            spin_manifest_version = 2
            [application]
            name = "a"
            [variables]
            address = { default = "redis://127.0.0.1:6379" }
            brands = { default = "" }
            token = { required = true }
            "#,
        )
        .unwrap();
        let e = variable_values(&manifest, &HashMap::new()).unwrap_err();
        assert!(e.0.contains("token"), "{e}");
        let given = HashMap::from([("token".to_string(), "t".to_string())]);
        let values = variable_values(&manifest, &given).unwrap();
        assert_eq!(values["address"], "redis://127.0.0.1:6379");
        assert_eq!(values["token"], "t");
        let unknown = HashMap::from([("nope".to_string(), "x".to_string())]);
        assert!(variable_values(&manifest, &unknown).is_err());
    }
}
