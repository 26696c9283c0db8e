//! Identifiers and secrets.

use rand::RngCore;
use sha2::{Digest, Sha256};

/// A random identifier with a type prefix, e.g. `str_9f2c41d07a3be615`.
pub fn new_id(prefix: &str) -> String {
    let mut bytes = [0u8; 8];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}_{}", hex::encode(bytes))
}

/// A random 192-bit secret with a type prefix, e.g. `mak_…` (API key) or `sk_…` (stream key).
pub fn new_secret(prefix: &str) -> String {
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}_{}", hex::encode(bytes))
}

/// How secrets are stored: hex SHA-256.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

// ---- listing and revoking keys ----

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Result, Store, Tenant, now_ms, tenant_from_row};

/// Which kind of secret a key is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyKind {
    /// `mak_…`: calls the API for one tenant.
    Api,
    /// `sk_…`: publishes one stream over RTMP.
    Stream,
}

/// What an API key may do. Each role may do what the ones below it may.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read and watch: streams, detections, events, playback.
    Viewer,
    /// Also change what runs: streams, analysis modes, pipelines, brands.
    Editor,
    /// Also keys, webhooks and components.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = crate::StoreError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "editor" => Ok(Role::Editor),
            "admin" => Ok(Role::Admin),
            _ => Err(crate::StoreError::Invalid(
                "role must be admin, editor or viewer".into(),
            )),
        }
    }
}

/// A key as listed: never the secret, only the first characters it was issued with.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRecord {
    /// `key_…` (API key) or `skey_…` (stream key).
    pub id: String,
    pub kind: KeyKind,
    pub tenant_id: String,
    /// The secret's first characters (`mak_1a2b3c4d`, `sk_1a2b3c4`), to recognise it.
    pub prefix: String,
    /// API keys: what the key was created for; stream keys: empty.
    pub label: String,
    /// Stream keys: the stream they publish to.
    pub stream_id: Option<String>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    /// API keys: what the key may do; stream keys: `None`.
    pub role: Option<Role>,
}

/// A valid API key, the tenant it belongs to, and what it may do.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKeyOwner {
    pub key_id: String,
    pub tenant: Tenant,
    pub role: Role,
}

/// Longest prefix worth matching: the stored prefixes are 12 (`mak_` + 8) and 10 (`sk_` + 7)
/// characters.
pub const MAX_KEY_PREFIX: usize = 32;

/// A key-prefix filter as callers may give it: letters, digits and `_`, at most 32 characters.
pub fn valid_key_prefix(prefix: &str) -> bool {
    prefix.len() <= MAX_KEY_PREFIX
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn key_from_row(kind: KeyKind, r: &AnyRow) -> Result<KeyRecord> {
    Ok(KeyRecord {
        id: r.try_get(0)?,
        kind,
        tenant_id: r.try_get(1)?,
        prefix: r.try_get(2)?,
        label: r.try_get(3)?,
        stream_id: r.try_get(4)?,
        created_at: r.try_get(5)?,
        revoked_at: r.try_get(6)?,
        role: r
            .try_get::<Option<String>, _>(7)?
            .map(|role| role.parse())
            .transpose()?,
    })
}

impl Store {
    /// The tenant and key id behind an API key, if the key exists and is not revoked.
    pub async fn api_key_owner(&self, secret: &str) -> Result<Option<ApiKeyOwner>> {
        let row = sqlx::query(
            "SELECT t.id, t.name, t.created_at, k.id, k.role FROM api_keys k JOIN tenants t ON t.id = k.tenant_id \
             WHERE k.key_hash = $1 AND k.revoked_at IS NULL",
        )
        .bind(hash_secret(secret))
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(ApiKeyOwner {
                tenant: tenant_from_row(&r)?,
                key_id: r.try_get(3)?,
                role: r.try_get::<String, _>(4)?.parse()?,
            })
        })
        .transpose()
    }

    /// Whether the API key with this id exists and is not revoked.
    pub async fn api_key_active(&self, key_id: &str) -> Result<bool> {
        let row = sqlx::query("SELECT 1 FROM api_keys WHERE id = $1 AND revoked_at IS NULL")
            .bind(key_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// API and stream keys, oldest first: one tenant's (`Some`) or every tenant's (`None`, for
    /// the admin command), those whose prefix starts with `prefix` when one is given.
    /// A `prefix` that could never match (see [`valid_key_prefix`]) matches nothing.
    pub async fn keys(
        &self,
        tenant_id: Option<&str>,
        prefix: Option<&str>,
    ) -> Result<Vec<KeyRecord>> {
        if prefix.is_some_and(|p| !valid_key_prefix(p)) {
            return Ok(Vec::new());
        }
        // Key tables are small (a few per tenant and stream); the prefix is matched here rather
        // than with LIKE, where '_' (in every prefix) is a wildcard.
        let api = sqlx::query(
            "SELECT id, tenant_id, prefix, label, CAST(NULL AS TEXT), created_at, revoked_at, role FROM api_keys \
             WHERE ($1 IS NULL OR tenant_id = $1)",
        )
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?;
        let stream = sqlx::query(
            "SELECT id, tenant_id, prefix, '', stream_id, created_at, revoked_at, CAST(NULL AS TEXT) FROM stream_keys \
             WHERE ($1 IS NULL OR tenant_id = $1)",
        )
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?;
        let mut keys = api
            .iter()
            .map(|r| key_from_row(KeyKind::Api, r))
            .chain(stream.iter().map(|r| key_from_row(KeyKind::Stream, r)))
            .collect::<Result<Vec<_>>>()?;
        if let Some(prefix) = prefix {
            keys.retain(|k| k.prefix.starts_with(prefix));
        }
        keys.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(keys)
    }

    /// Revokes an API key (`key_…`) or stream key (`skey_…`) of the tenant (`None`: any tenant,
    /// for the admin command). A revoked API key authenticates nothing from then on; a revoked
    /// stream key is refused at the next publish. Revoking twice keeps the first time.
    /// Returns the key as it is now, or `None` when there is no such key (for this tenant).
    pub async fn revoke_key(
        &self,
        tenant_id: Option<&str>,
        key_id: &str,
    ) -> Result<Option<KeyRecord>> {
        let table = if key_id.starts_with("skey_") {
            "stream_keys"
        } else if key_id.starts_with("key_") {
            "api_keys"
        } else {
            return Ok(None);
        };
        sqlx::query(&format!(
            "UPDATE {table} SET revoked_at = $1 WHERE id = $2 AND ($3 IS NULL OR tenant_id = $3) AND revoked_at IS NULL"
        ))
        .bind(now_ms())
        .bind(key_id)
        .bind(tenant_id)
        .execute(&self.pool)
        .await?;
        let (kind, label, stream, role) = if table == "stream_keys" {
            (KeyKind::Stream, "''", "stream_id", "CAST(NULL AS TEXT)")
        } else {
            (KeyKind::Api, "label", "CAST(NULL AS TEXT)", "role")
        };
        let row = sqlx::query(&format!(
            "SELECT id, tenant_id, prefix, {label}, {stream}, created_at, revoked_at, {role} FROM {table} \
             WHERE id = $1 AND ($2 IS NULL OR tenant_id = $2)"
        ))
        .bind(key_id)
        .bind(tenant_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| key_from_row(kind, &r)).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreError;

    /// Listing by prefix, revocation of both kinds, and tenant scoping, on any backend.
    async fn revocation_checks(store: &Store) -> Result<()> {
        let a = store.create_tenant("keys-a").await?;
        let b = store.create_tenant("keys-b").await?;
        let api = store.create_api_key(&a.id, "ci").await?;
        let other = store.create_api_key(&b.id, "b's").await?;
        let (stream, sk) = store.create_stream(&a.id, "main").await?;

        let listed = store.keys(Some(&a.id), None).await?;
        assert_eq!(listed.len(), 2, "{listed:?}");
        let api_row = listed.iter().find(|k| k.id == api.id).unwrap();
        assert_eq!(
            (api_row.kind, api_row.label.as_str(), &api_row.stream_id),
            (KeyKind::Api, "ci", &None)
        );
        assert!(api.secret.starts_with(&api_row.prefix));
        let sk_row = listed.iter().find(|k| k.id == sk.id).unwrap();
        assert_eq!(
            (sk_row.kind, sk_row.stream_id.as_deref()),
            (KeyKind::Stream, Some(stream.id.as_str()))
        );
        // By prefix: the secret's first characters find exactly that key; '_' is no wildcard.
        let by_prefix = store.keys(Some(&a.id), Some(&api.secret[..10])).await?;
        assert_eq!(
            by_prefix.iter().map(|k| &k.id).collect::<Vec<_>>(),
            [&api.id]
        );
        assert_eq!(store.keys(Some(&a.id), Some("sk_")).await?.len(), 1);
        assert!(store.keys(Some(&a.id), Some("m_k")).await?.is_empty());
        assert!(store.keys(Some(&a.id), Some("%")).await?.is_empty());
        assert_eq!(store.keys(None, Some("mak_")).await?.len(), 2);

        // Another tenant can neither see nor revoke them.
        assert!(
            store
                .keys(Some(&b.id), Some(&api_row.prefix))
                .await?
                .is_empty()
        );
        assert!(store.revoke_key(Some(&b.id), &api.id).await?.is_none());
        assert!(store.api_key_owner(&api.secret).await?.is_some());

        let revoked = store.revoke_key(Some(&a.id), &api.id).await?.unwrap();
        let at = revoked.revoked_at.expect("revoked");
        assert!(store.api_key_owner(&api.secret).await?.is_none());
        assert!(store.authenticate_api_key(&api.secret).await?.is_none());
        let again = store.revoke_key(Some(&a.id), &api.id).await?.unwrap();
        assert_eq!(
            again.revoked_at,
            Some(at),
            "the first revocation time stays"
        );

        assert!(store.stream_for_key(&sk.secret).await?.is_some());
        store.revoke_key(None, &sk.id).await?.unwrap();
        assert!(store.stream_for_key(&sk.secret).await?.is_none());

        assert!(store.revoke_key(None, "key_missing").await?.is_none());
        assert!(store.revoke_key(None, "ten_x").await?.is_none());
        let owner = store.api_key_owner(&other.secret).await?.unwrap();
        assert_eq!((owner.key_id, owner.tenant.id), (other.id, b.id));
        Ok(())
    }

    #[tokio::test]
    async fn keys_are_listed_by_prefix_and_revoked_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("store.db").display());
        let store = Store::open(&url).await.unwrap();
        revocation_checks(&store).await.unwrap();
    }

    /// The same on a real PostgreSQL (127.0.0.1:5432, or `MEDIA_ANALYZER_TEST_POSTGRES`), in a
    /// database created for this test and dropped after.
    #[tokio::test]
    async fn keys_are_listed_by_prefix_and_revoked_on_postgres() {
        let (admin, db, url) = crate::tests::postgres_database("ma_keys").await;
        let result = async {
            let store = Store::open(&url).await?;
            revocation_checks(&store).await?;
            store.close().await;
            Ok::<_, StoreError>(())
        }
        .await;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
            .execute(&admin)
            .await
            .unwrap();
        result.unwrap();
    }
}
