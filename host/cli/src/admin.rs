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
    role: store::Role,
) -> anyhow::Result<()> {
    let tenant = store
        .tenant_by_name(tenant)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no tenant named '{tenant}' (see `tenant list`)"))?;
    match stream {
        None => {
            let key = store
                .create_api_key_with_role(&tenant.id, label, role)
                .await?;
            println!("API key: {}", key.secret);
            println!("Role: {}", role.as_str());
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

/// Keys of one tenant (by name) or of all, optionally by secret prefix; one line each.
pub async fn key_list(
    store: &Store,
    tenant: Option<&str>,
    prefix: Option<&str>,
) -> anyhow::Result<()> {
    let tenant_id = match tenant {
        Some(name) => Some(
            store
                .tenant_by_name(name)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no tenant named '{name}' (see `tenant list`)"))?
                .id,
        ),
        None => None,
    };
    if let Some(p) = prefix
        && !store::valid_key_prefix(p)
    {
        anyhow::bail!(
            "--prefix must be at most {} letters, digits or '_'",
            store::MAX_KEY_PREFIX
        );
    }
    let names: std::collections::HashMap<String, String> = store
        .tenants()
        .await?
        .into_iter()
        .map(|t| (t.id, t.name))
        .collect();
    let keys = store.keys(tenant_id.as_deref(), prefix).await?;
    if keys.is_empty() {
        println!("no keys");
    }
    for k in keys {
        println!(
            "{}",
            key_line(&k, names.get(&k.tenant_id).map(String::as_str))
        );
    }
    Ok(())
}

fn key_line(k: &store::KeyRecord, tenant: Option<&str>) -> String {
    let (kind, what) = match k.kind {
        store::KeyKind::Api => ("api", format!("label={}", k.label)),
        store::KeyKind::Stream => (
            "stream",
            format!("stream={}", k.stream_id.as_deref().unwrap_or("")),
        ),
    };
    let state = if k.revoked_at.is_some() {
        "revoked"
    } else {
        "valid"
    };
    format!(
        "{}\t{kind}\t{}…\ttenant={}\t{what}\t{state}",
        k.id,
        k.prefix,
        tenant.unwrap_or(&k.tenant_id)
    )
}

/// Revokes a key by id, or by a prefix of its secret that exactly one key has.
pub async fn key_revoke(store: &Store, key: &str) -> anyhow::Result<()> {
    let id = if key.starts_with("key_") || key.starts_with("skey_") {
        key.to_string()
    } else if key.len() < 8 {
        anyhow::bail!("give a key id, or at least 8 characters of the secret (see `key list`)");
    } else {
        // The stored prefix is the secret's first 10-12 characters: a full secret is cut to it.
        let all = store.keys(None, None).await?;
        let matching: Vec<_> = all
            .iter()
            .filter(|k| k.prefix.starts_with(key) || key.starts_with(k.prefix.as_str()))
            .collect();
        match matching.as_slice() {
            [one] => one.id.clone(),
            [] => anyhow::bail!("no key id or secret prefix matches (see `key list`)"),
            _ => anyhow::bail!(
                "{} keys match that prefix: give the key id (see `key list --prefix`)",
                matching.len()
            ),
        }
    };
    let revoked = store
        .revoke_key(None, &id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no key with id {id} (see `key list`)"))?;
    let tenant = store
        .tenants()
        .await?
        .into_iter()
        .find(|t| t.id == revoked.tenant_id)
        .map(|t| t.name);
    println!("Revoked: {}", key_line(&revoked, tenant.as_deref()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keys_are_revoked_by_id_or_unique_secret_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("db.sqlite").display());
        let store = Store::open(&url).await.unwrap();
        let t = store.create_tenant("acme").await.unwrap();
        let api = store.create_api_key(&t.id, "ci").await.unwrap();
        let (_, sk) = store.create_stream(&t.id, "main").await.unwrap();

        key_revoke(&store, &api.id).await.unwrap();
        assert!(
            store
                .authenticate_api_key(&api.secret)
                .await
                .unwrap()
                .is_none()
        );
        // The whole secret, or its first characters, find a stream key too.
        key_revoke(&store, &sk.secret).await.unwrap();
        assert!(store.stream_for_key(&sk.secret).await.unwrap().is_none());

        let other = store.create_api_key(&t.id, "other").await.unwrap();
        key_revoke(&store, &other.secret[..10]).await.unwrap();
        assert!(
            store
                .authenticate_api_key(&other.secret)
                .await
                .unwrap()
                .is_none()
        );
        for bad in ["mak_", "key_missing", "mak_zzzzzzzz"] {
            assert!(key_revoke(&store, bad).await.is_err(), "{bad}");
        }
        // Too short a prefix, or one that several keys share, revokes nothing.
        let a = store.create_api_key(&t.id, "a").await.unwrap();
        let b = store.create_api_key(&t.id, "b").await.unwrap();
        assert!(key_revoke(&store, "mak_").await.is_err());
        assert!(
            store
                .authenticate_api_key(&a.secret)
                .await
                .unwrap()
                .is_some()
        );
        assert!(
            store
                .authenticate_api_key(&b.secret)
                .await
                .unwrap()
                .is_some()
        );
        key_list(&store, Some("acme"), Some("mak_")).await.unwrap();
        assert!(key_list(&store, Some("nobody"), None).await.is_err());
        assert!(key_list(&store, None, Some("%")).await.is_err());
    }
}
