//! Tenant models: ONNX files a tenant's components load by name, in the tenant's own namespace.
//! Like components, each upload of a name is a new version and the bytes are files named by
//! content hash ([`crate::ComponentFiles::for_models`]); a row is written only after its file.
//! Components load the newest version of a name.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Result, Store, StoreError, insert_next_version, now_ms, valid_component_name};

/// One stored version of a tenant's model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelVersion {
    pub tenant_id: String,
    pub name: String,
    /// 1, 2, … per name and tenant.
    pub version: u32,
    /// SHA-256 of the bytes, hex: the file it is kept in.
    pub sha256: String,
    pub size: i64,
    /// The model's inputs and outputs (JSON) as checked on upload.
    pub signature: String,
    pub created_at: i64,
    /// The API key (id) that uploaded it.
    pub created_by: String,
}

/// What an upload adds (the version is given out by the store).
#[derive(Debug, Clone, Copy)]
pub struct NewModel<'a> {
    pub tenant_id: &'a str,
    pub name: &'a str,
    pub sha256: &'a str,
    pub size: i64,
    pub signature: &'a str,
    pub created_by: &'a str,
}

/// What one tenant may keep: versions and bytes (deleted versions do not count).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelQuota {
    pub versions: u32,
    pub bytes: i64,
}

impl Default for ModelQuota {
    fn default() -> Self {
        Self {
            versions: 16,
            bytes: 512 << 20,
        }
    }
}

const MODEL_COLUMNS: &str =
    "tenant_id, name, version, sha256, size, signature, created_at, created_by";

fn model_from_row(r: &AnyRow) -> Result<ModelVersion> {
    Ok(ModelVersion {
        tenant_id: r.try_get(0)?,
        name: r.try_get(1)?,
        version: r.try_get::<i64, _>(2)?.clamp(0, u32::MAX as i64) as u32,
        sha256: r.try_get(3)?,
        size: r.try_get(4)?,
        signature: r.try_get(5)?,
        created_at: r.try_get(6)?,
        created_by: r.try_get(7)?,
    })
}

impl Store {
    /// Adds the next version of a model name (1 for a new name), within the tenant's `quota`
    /// (`Conflict` saying what it holds when the new version would not fit). Concurrent uploads
    /// of one name get consecutive versions.
    pub async fn add_model_version(
        &self,
        new: NewModel<'_>,
        quota: ModelQuota,
    ) -> Result<ModelVersion> {
        if !valid_component_name(new.name) {
            return Err(StoreError::Invalid(
                "model name must be 1-64 characters of lowercase letters, digits and '-', starting with a letter".into(),
            ));
        }
        // One statement reads what the tenant holds and writes the next version only when it
        // fits.
        let (inserted, created_at) = insert_next_version(|created_at| {
            sqlx::query(
                "INSERT INTO models (tenant_id, name, version, sha256, size, signature, created_at, created_by) \
                 SELECT $1, $2, \
                   (SELECT COALESCE(MAX(version), 0) + 1 FROM models WHERE tenant_id = $1 AND name = $2), \
                   $3, $4, $5, $6, $7 \
                 WHERE (SELECT COUNT(*) FROM models WHERE tenant_id = $1 AND deleted_at IS NULL) < $8 \
                   AND (SELECT COALESCE(SUM(size), 0) FROM models WHERE tenant_id = $1 AND deleted_at IS NULL) + $4 <= $9 \
                 RETURNING version",
            )
            .bind(new.tenant_id)
            .bind(new.name)
            .bind(new.sha256)
            .bind(new.size)
            .bind(new.signature)
            .bind(created_at)
            .bind(new.created_by)
            .bind(i64::from(quota.versions))
            .bind(quota.bytes)
            .fetch_optional(&self.pool)
        })
        .await?;
        let Some(row) = inserted else {
            let held = self.model_versions(new.tenant_id).await?;
            let bytes: i64 = held.iter().map(|m| m.size).sum();
            return Err(StoreError::Conflict(format!(
                "the tenant's models would be over their quota ({} versions of at most {}, \
                 {bytes} bytes of at most {}, this one {} bytes); delete old versions first",
                held.len(),
                quota.versions,
                quota.bytes,
                new.size
            )));
        };
        Ok(ModelVersion {
            tenant_id: new.tenant_id.into(),
            name: new.name.into(),
            version: row.try_get::<i64, _>(0)?.clamp(0, u32::MAX as i64) as u32,
            sha256: new.sha256.into(),
            size: new.size,
            signature: new.signature.into(),
            created_at,
            created_by: new.created_by.into(),
        })
    }

    /// The tenant's model versions (deleted ones left out), by name, then version.
    pub async fn model_versions(&self, tenant_id: &str) -> Result<Vec<ModelVersion>> {
        let rows = sqlx::query(&format!(
            "SELECT {MODEL_COLUMNS} FROM models WHERE tenant_id = $1 AND deleted_at IS NULL \
             ORDER BY name, version"
        ))
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(model_from_row).collect()
    }

    /// The newest version of each of the tenant's model names: what its components load.
    pub async fn current_models(&self, tenant_id: &str) -> Result<Vec<ModelVersion>> {
        let mut current: Vec<ModelVersion> = Vec::new();
        for version in self.model_versions(tenant_id).await? {
            match current.last_mut() {
                Some(last) if last.name == version.name => *last = version,
                _ => current.push(version),
            }
        }
        Ok(current)
    }

    /// Deletes one version. Streams running it keep their loaded copy until their pipeline is
    /// next loaded. Its file stays while another version (of any tenant) has the same bytes.
    pub async fn delete_model_version(
        &self,
        tenant_id: &str,
        name: &str,
        version: u32,
    ) -> Result<ModelVersion> {
        let row = sqlx::query(&format!(
            "UPDATE models SET deleted_at = $4 WHERE tenant_id = $1 AND name = $2 AND version = $3 \
             AND deleted_at IS NULL RETURNING {MODEL_COLUMNS}"
        ))
        .bind(tenant_id)
        .bind(name)
        .bind(i64::from(version))
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound("model version"))?;
        model_from_row(&row)
    }

    /// Whether any model version (of any tenant, not deleted) has these bytes.
    pub async fn model_file_in_use(&self, sha256: &str) -> Result<bool> {
        let row =
            sqlx::query("SELECT 1 FROM models WHERE sha256 = $1 AND deleted_at IS NULL LIMIT 1")
                .bind(sha256)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store_with_tenants() -> (tempfile::TempDir, Store, String, String) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("sqlite://{}/s.db", dir.path().display()))
            .await
            .unwrap();
        let a = store.create_tenant("a").await.unwrap().id;
        let b = store.create_tenant("b").await.unwrap().id;
        (dir, store, a, b)
    }

    fn new<'a>(tenant_id: &'a str, name: &'a str, sha256: &'a str, size: i64) -> NewModel<'a> {
        NewModel {
            tenant_id,
            name,
            sha256,
            size,
            signature: "{}",
            created_by: "key",
        }
    }

    #[tokio::test]
    async fn versions_are_per_tenant_and_the_newest_is_current() {
        let (_dir, store, a, b) = store_with_tenants().await;
        let q = ModelQuota::default();
        assert_eq!(
            store
                .add_model_version(new(&a, "logo", "h1", 10), q)
                .await
                .unwrap()
                .version,
            1
        );
        assert_eq!(
            store
                .add_model_version(new(&a, "logo", "h2", 10), q)
                .await
                .unwrap()
                .version,
            2
        );
        assert_eq!(
            store
                .add_model_version(new(&b, "logo", "h3", 10), q)
                .await
                .unwrap()
                .version,
            1
        );
        let current = store.current_models(&a).await.unwrap();
        assert_eq!(current.len(), 1);
        assert_eq!((current[0].version, current[0].sha256.as_str()), (2, "h2"));
        assert_eq!(store.current_models(&b).await.unwrap()[0].sha256, "h3");
        // Deleting the newest makes the one before current again; B's is not A's to delete.
        assert!(matches!(
            store.delete_model_version(&a, "logo", 3).await,
            Err(StoreError::NotFound(_))
        ));
        store.delete_model_version(&a, "logo", 2).await.unwrap();
        assert_eq!(store.current_models(&a).await.unwrap()[0].version, 1);
        assert!(!store.model_file_in_use("h2").await.unwrap());
        assert!(store.model_file_in_use("h3").await.unwrap());
        // A deleted number is not given out again.
        assert_eq!(
            store
                .add_model_version(new(&a, "logo", "h4", 10), q)
                .await
                .unwrap()
                .version,
            3
        );
    }

    #[tokio::test]
    async fn the_quota_holds_and_nothing_is_added_past_it() {
        let (_dir, store, a, b) = store_with_tenants().await;
        let q = ModelQuota {
            versions: 2,
            bytes: 100,
        };
        store
            .add_model_version(new(&a, "m", "h1", 60), q)
            .await
            .unwrap();
        let over = store.add_model_version(new(&a, "n", "h2", 41), q).await;
        assert!(
            matches!(over, Err(StoreError::Conflict(ref m)) if m.contains("quota")),
            "{over:?}"
        );
        store
            .add_model_version(new(&a, "n", "h2", 40), q)
            .await
            .unwrap();
        let over = store.add_model_version(new(&a, "o", "h3", 0), q).await;
        assert!(matches!(over, Err(StoreError::Conflict(_))));
        assert_eq!(store.model_versions(&a).await.unwrap().len(), 2);
        // Another tenant's quota is its own.
        store
            .add_model_version(new(&b, "m", "h1", 100), q)
            .await
            .unwrap();
    }
}
