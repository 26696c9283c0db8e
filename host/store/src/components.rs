//! Tenant components (versions of a name in the tenant's own namespace) and pipelines (which
//! versions run, per tenant or stream and world). The component bytes are not here: they are
//! files named by content hash ([`crate::ComponentFiles`]); a row is written only after its file.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Result, Store, StoreError, insert_next_version, now_ms};

/// One stored version of a tenant's component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentVersion {
    pub tenant_id: String,
    pub name: String,
    /// 1, 2, … per name and tenant (0 is how pipelines name a bundled component).
    pub version: u32,
    /// `detector`, `trigger` or `effects`.
    pub world: String,
    /// SHA-256 of the bytes, hex: the file it is kept in.
    pub sha256: String,
    pub size: i64,
    pub created_at: i64,
    /// The API key (id) that uploaded it, or `cli` for a local `component push`.
    pub created_by: String,
}

/// What an upload adds (the version is given out by the store).
#[derive(Debug, Clone, Copy)]
pub struct NewComponent<'a> {
    pub tenant_id: &'a str,
    pub name: &'a str,
    pub world: &'a str,
    pub sha256: &'a str,
    pub size: i64,
    pub created_by: &'a str,
}

/// One component of a pipeline stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageComponent {
    pub name: String,
    /// 0: the bundled component of that name.
    pub version: u32,
    /// Its settings for the streams it runs on, as the component reads them (name → value).
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

/// A stored pipeline stage: what runs for one world, for a tenant's streams or one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineStage {
    /// `None`: the tenant's default; `Some(stream id)`: that stream's own.
    pub stream_id: Option<String>,
    pub world: String,
    pub components: Vec<StageComponent>,
    pub updated_at: i64,
    pub updated_by: String,
    /// The change (`chg_…`) that set it.
    pub change: String,
}

/// One recorded change of a pipeline stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineChange {
    pub id: String,
    /// `None`: the tenant's default; `Some(stream id)`: that stream's own.
    pub stream_id: Option<String>,
    pub world: String,
    /// What was set before (`None`: nothing of its own, inherited).
    pub from: Option<Vec<StageComponent>>,
    /// What is set now (`None`: the setting was removed).
    pub to: Option<Vec<StageComponent>>,
    pub at: i64,
    /// The API key (id) that made it.
    pub by: String,
}

/// Component names: what detections carry in `component`, and a path segment in the API.
pub fn valid_component_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

const COMPONENT_COLUMNS: &str =
    "tenant_id, name, version, world, sha256, size, created_at, created_by";

fn component_from_row(r: &AnyRow) -> Result<ComponentVersion> {
    Ok(ComponentVersion {
        tenant_id: r.try_get(0)?,
        name: r.try_get(1)?,
        version: r.try_get::<i64, _>(2)?.clamp(0, u32::MAX as i64) as u32,
        world: r.try_get(3)?,
        sha256: r.try_get(4)?,
        size: r.try_get(5)?,
        created_at: r.try_get(6)?,
        created_by: r.try_get(7)?,
    })
}

fn scope_of(stream_id: Option<&str>) -> &str {
    stream_id.unwrap_or("")
}

impl Store {
    /// Adds the next version of a component name (1 for a new name). A name keeps its world: an
    /// upload of a detector's name as a trigger is refused. Concurrent uploads of one name get
    /// consecutive versions.
    pub async fn add_component_version(&self, new: NewComponent<'_>) -> Result<ComponentVersion> {
        if !valid_component_name(new.name) {
            return Err(StoreError::Invalid(
                "component name must be 1-64 characters of lowercase letters, digits and '-', starting with a letter".into(),
            ));
        }
        // One statement that reads the last version and writes the next: it takes the write
        // lock at once (SQLite) and cannot give a name two worlds. Two concurrent uploads on
        // PostgreSQL may pick the same number: the key refuses one, which takes the next.
        let (inserted, created_at) = insert_next_version(|created_at| {
            sqlx::query(
                "INSERT INTO components (tenant_id, name, version, world, sha256, size, created_at, created_by) \
                 SELECT $1, $2, COALESCE(MAX(version), 0) + 1, $3, $4, $5, $6, $7 FROM components \
                 WHERE tenant_id = $1 AND name = $2 \
                 HAVING COUNT(CASE WHEN world <> $3 THEN 1 END) = 0 \
                 RETURNING version",
            )
            .bind(new.tenant_id)
            .bind(new.name)
            .bind(new.world)
            .bind(new.sha256)
            .bind(new.size)
            .bind(created_at)
            .bind(new.created_by)
            .fetch_optional(&self.pool)
        })
        .await?;
        let Some(row) = inserted else {
            let world: Option<String> = sqlx::query(
                "SELECT world FROM components WHERE tenant_id = $1 AND name = $2 LIMIT 1",
            )
            .bind(new.tenant_id)
            .bind(new.name)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| r.try_get(0))
            .transpose()?;
            return Err(StoreError::Conflict(format!(
                "component '{}' is a {} component; upload the {} under another name",
                new.name,
                world.as_deref().unwrap_or("different"),
                new.world
            )));
        };
        Ok(ComponentVersion {
            tenant_id: new.tenant_id.into(),
            name: new.name.into(),
            version: row.try_get::<i64, _>(0)?.clamp(0, u32::MAX as i64) as u32,
            world: new.world.into(),
            sha256: new.sha256.into(),
            size: new.size,
            created_at,
            created_by: new.created_by.into(),
        })
    }

    /// The tenant's component versions (deleted ones left out), by name, then version.
    pub async fn component_versions(&self, tenant_id: &str) -> Result<Vec<ComponentVersion>> {
        let rows = sqlx::query(&format!(
            "SELECT {COMPONENT_COLUMNS} FROM components WHERE tenant_id = $1 AND deleted_at IS NULL \
             ORDER BY name, version"
        ))
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(component_from_row).collect()
    }

    /// One version of the tenant's component, or its latest when `version` is `None`.
    pub async fn component_version(
        &self,
        tenant_id: &str,
        name: &str,
        version: Option<u32>,
    ) -> Result<Option<ComponentVersion>> {
        let row = sqlx::query(&format!(
            "SELECT {COMPONENT_COLUMNS} FROM components WHERE tenant_id = $1 AND name = $2 \
             AND deleted_at IS NULL AND ($3 < 0 OR version = $3) ORDER BY version DESC LIMIT 1"
        ))
        .bind(tenant_id)
        .bind(name)
        .bind(version.map_or(-1, i64::from))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(component_from_row).transpose()
    }

    /// Deletes a version that no pipeline of the tenant uses (`Conflict` naming the pipelines
    /// that do). Its file stays while another version, of any tenant, has the same bytes
    /// ([`Store::component_file_in_use`]).
    pub async fn delete_component_version(
        &self,
        tenant_id: &str,
        name: &str,
        version: u32,
    ) -> Result<ComponentVersion> {
        // The write comes first, so the transaction holds the write lock from its start (SQLite
        // cannot upgrade a reading transaction once another has written); a version in use rolls
        // it back.
        let mut tx = self.pool.begin().await?;
        let marked = sqlx::query(
            "UPDATE components SET deleted_at = $4 WHERE tenant_id = $1 AND name = $2 AND version = $3 \
             AND deleted_at IS NULL",
        )
        .bind(tenant_id)
        .bind(name)
        .bind(i64::from(version))
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        if marked.rows_affected() == 0 {
            return Err(StoreError::NotFound("component version"));
        }
        let stages = sqlx::query("SELECT scope, stages FROM pipelines WHERE tenant_id = $1")
            .bind(tenant_id)
            .fetch_all(&mut *tx)
            .await?;
        let mut users = Vec::new();
        for stage in &stages {
            let scope: String = stage.try_get(0)?;
            let components = parse_stages(&stage.try_get::<String, _>(1)?)?;
            if components
                .iter()
                .any(|c| c.name == name && c.version == version)
            {
                users.push(if scope.is_empty() {
                    "the tenant's default pipeline".to_string()
                } else {
                    format!("stream {scope}")
                });
            }
        }
        if !users.is_empty() {
            users.sort();
            users.dedup();
            return Err(StoreError::Conflict(format!(
                "{name} version {version} is in use by {}; change those pipelines first",
                users.join(", ")
            )));
        }
        let row = sqlx::query(&format!(
            "SELECT {COMPONENT_COLUMNS} FROM components WHERE tenant_id = $1 AND name = $2 AND version = $3"
        ))
        .bind(tenant_id)
        .bind(name)
        .bind(i64::from(version))
        .fetch_one(&mut *tx)
        .await?;
        let deleted = component_from_row(&row)?;
        tx.commit().await?;
        Ok(deleted)
    }

    /// Whether any version (of any tenant, not deleted) has these bytes.
    pub async fn component_file_in_use(&self, sha256: &str) -> Result<bool> {
        let row = sqlx::query(
            "SELECT 1 FROM components WHERE sha256 = $1 AND deleted_at IS NULL LIMIT 1",
        )
        .bind(sha256)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// Sets what runs for `world` on the tenant's streams (`stream_id` `None`) or on one stream;
    /// `None` as `components` removes the setting (the stream inherits the tenant's, the tenant
    /// the bundled defaults). The change is recorded (who, when, from, to) in the same
    /// transaction; its id is returned.
    pub async fn set_pipeline_stage(
        &self,
        tenant_id: &str,
        stream_id: Option<&str>,
        world: &str,
        components: Option<&[StageComponent]>,
        updated_by: &str,
    ) -> Result<String> {
        let scope = scope_of(stream_id);
        let change = crate::new_id("chg");
        let now = now_ms();
        let to = components
            .map(|c| {
                serde_json::to_string(c)
                    .map_err(|e| StoreError::Invalid(format!("pipeline stage: {e}")))
            })
            .transpose()?;
        // The write comes first (see delete_component_version): the old stage is what it deletes.
        let mut tx = self.pool.begin().await?;
        let before = sqlx::query(
            "DELETE FROM pipelines WHERE tenant_id = $1 AND scope = $2 AND world = $3 RETURNING stages",
        )
        .bind(tenant_id)
        .bind(scope)
        .bind(world)
        .fetch_optional(&mut *tx)
        .await?;
        let from: Option<String> = before.map(|r| r.try_get(0)).transpose()?;
        if let Some(stages) = &to {
            sqlx::query(
                "INSERT INTO pipelines (tenant_id, scope, world, stages, updated_at, updated_by, change_id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(tenant_id)
            .bind(scope)
            .bind(world)
            .bind(stages)
            .bind(now)
            .bind(updated_by)
            .bind(&change)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "INSERT INTO pipeline_changes (id, tenant_id, scope, world, from_stages, to_stages, at, by_key) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&change)
        .bind(tenant_id)
        .bind(scope)
        .bind(world)
        .bind(from)
        .bind(to)
        .bind(now)
        .bind(updated_by)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(change)
    }

    /// The tenant's stored pipeline stages: its defaults and its streams' own.
    pub async fn pipeline_stages(&self, tenant_id: &str) -> Result<Vec<PipelineStage>> {
        let rows = sqlx::query(
            "SELECT scope, world, stages, updated_at, updated_by, change_id FROM pipelines \
             WHERE tenant_id = $1 ORDER BY scope, world",
        )
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let scope: String = r.try_get(0)?;
                Ok(PipelineStage {
                    stream_id: (!scope.is_empty()).then_some(scope),
                    world: r.try_get(1)?,
                    components: parse_stages(&r.try_get::<String, _>(2)?)?,
                    updated_at: r.try_get(3)?,
                    updated_by: r.try_get(4)?,
                    change: r.try_get(5)?,
                })
            })
            .collect()
    }

    /// The tenant's latest pipeline changes, newest first (at most `limit`).
    pub async fn pipeline_changes(
        &self,
        tenant_id: &str,
        limit: u32,
    ) -> Result<Vec<PipelineChange>> {
        let rows = sqlx::query(
            "SELECT id, scope, world, from_stages, to_stages, at, by_key FROM pipeline_changes \
             WHERE tenant_id = $1 ORDER BY at DESC, id LIMIT $2",
        )
        .bind(tenant_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let stages = |json: Option<String>| json.as_deref().map(parse_stages).transpose();
        rows.iter()
            .map(|r| {
                let scope: String = r.try_get(1)?;
                Ok(PipelineChange {
                    id: r.try_get(0)?,
                    stream_id: (!scope.is_empty()).then_some(scope),
                    world: r.try_get(2)?,
                    from: stages(r.try_get(3)?)?,
                    to: stages(r.try_get(4)?)?,
                    at: r.try_get(5)?,
                    by: r.try_get(6)?,
                })
            })
            .collect()
    }
}

fn parse_stages(json: &str) -> Result<Vec<StageComponent>> {
    serde_json::from_str(json)
        .map_err(|e| StoreError::Invalid(format!("a stored pipeline stage does not parse: {e}")))
}
