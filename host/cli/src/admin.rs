//! Admin commands that work on the store directly: tenants and keys.

use store::Store;

pub async fn tenant_create(store: &Store, name: &str) -> anyhow::Result<()> {
    let tenant = store.create_tenant(name).await?;
    let key = store
        .create_api_key(&tenant.id, "created by tenant create")
        .await?;
    println!("Tenant: {} ({})", tenant.name, tenant.id);
    println!("API key: {}", key.secret);
    Ok(())
}

pub async fn tenant_list(store: &Store) -> anyhow::Result<()> {
    let tenants = store.tenants().await?;
    if tenants.is_empty() {
        println!("no tenants yet (serve creates 'demo' on first start)");
    }
    for t in tenants {
        let streams = store.streams(&t.id).await?;
        println!("{}\t{}\t{} stream(s)", t.name, t.id, streams.len());
    }
    Ok(())
}

/// An API key for a tenant, or with `stream`, a stream key (creating the stream if needed).
pub async fn key_create(
    store: &Store,
    tenant: &str,
    stream: Option<&str>,
    label: &str,
) -> anyhow::Result<()> {
    let tenant = store
        .tenant_by_name(tenant)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no tenant named '{tenant}' (see `tenant list`)"))?;
    match stream {
        None => {
            let key = store.create_api_key(&tenant.id, label).await?;
            println!("API key: {}", key.secret);
        }
        Some(name) => {
            let existing = store
                .streams(&tenant.id)
                .await?
                .into_iter()
                .find(|s| s.name == name);
            let (stream, key) = match existing {
                Some(s) => {
                    let key = store.create_stream_key(&tenant.id, &s.id).await?;
                    (s, key)
                }
                None => store.create_stream(&tenant.id, name).await?,
            };
            println!("Stream: {} ({})", stream.name, stream.id);
            println!("Stream key: {}", key.secret);
        }
    }
    Ok(())
}
