//! `media-analyzer spin up`: runs a Spin application's Redis-triggered components (`spin.toml`,
//! manifest version 2) on this host's sandbox, as `spin up` would, for installs without the Spin
//! runtime (and for the test that checks the Spin component against the in-host trigger).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use runtime::spin::SpinHost;
use runtime::spin_app::SpinApp;
use runtime::{ModelRegistry, Runtime, SandboxConfig};

pub struct SpinUp {
    pub manifest: PathBuf,
    pub variables: Vec<(String, String)>,
    /// A folder where components' sources are found by file name (the built components).
    pub components: Option<PathBuf>,
}

pub async fn up(args: SpinUp) -> anyhow::Result<()> {
    let runtime = Arc::new(
        Runtime::new(SandboxConfig::default(), ModelRegistry::new())
            .map_err(|e| anyhow::anyhow!("starting the sandbox: {e:#}"))?,
    );
    let host = Arc::new(
        SpinHost::new(&runtime).map_err(|e| anyhow::anyhow!("linking the Spin world: {e:#}"))?,
    );
    let overrides: HashMap<String, String> = args.variables.into_iter().collect();
    let manifest = args.manifest.clone();
    let components = args.components.clone();
    let app = {
        let (runtime, host) = (runtime.clone(), host.clone());
        tokio::task::spawn_blocking(move || {
            SpinApp::load(
                &manifest,
                &overrides,
                components.as_deref(),
                &runtime,
                &host,
            )
        })
        .await?
        .with_context(|| format!("loading {}", args.manifest.display()))?
    };
    let app = Arc::new(app);
    for s in &app.subscriptions {
        println!(
            "{}: component {} on {} channel {}",
            app.name, s.component_id, s.address, s.channel
        );
    }
    let running = tokio::spawn(app.clone().run(runtime, host, || {
        println!("subscribed; Ctrl-C stops");
    }));
    tokio::select! {
        result = running => result??,
        _ = tokio::signal::ctrl_c() => {}
    }
    println!(
        "{} messages handled, {} failed",
        app.handled.load(std::sync::atomic::Ordering::Relaxed),
        app.failed.load(std::sync::atomic::Ordering::Relaxed)
    );
    Ok(())
}
