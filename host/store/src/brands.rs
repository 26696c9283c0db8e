//! The brand catalogue: a tenant's brands, with aliases and prompts, and their reference logos.
//! Every read is scoped by tenant id.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Result, Store, StoreError, new_id, now_ms};

/// Brands one tenant may have.
pub const MAX_BRANDS: i64 = 500;
/// Reference logos one brand may have.
pub const MAX_LOGOS_PER_BRAND: i64 = 20;
/// Reference logos one tenant may have (all brands together).
pub const MAX_LOGOS: i64 = 500;

/// A brand name as detections carry it (`brand:<folded>`): letters and digits, lower case.
pub fn fold_brand(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Brand {
    pub tenant_id: String,
    /// As detections name it, after `brand:`.
    pub folded: String,
    /// As the tenant wrote it.
    pub name: String,
    pub aliases: Vec<String>,
    pub prompts: Vec<String>,
    pub created_at: i64,
    pub created_by: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrandLogo {
    /// `logo_…`
    pub id: String,
    /// The brand's folded name.
    pub brand: String,
    pub sha256: String,
    pub size: i64,
    /// `png`, `jpeg` or `svg`.
    pub format: String,
    pub created_at: i64,
    pub created_by: String,
}

/// What a logo upload adds.
#[derive(Debug, Clone, Copy)]
pub struct NewLogo<'a> {
    pub tenant_id: &'a str,
    pub brand: &'a str,
    pub sha256: &'a str,
    pub size: i64,
    pub format: &'a str,
    pub created_by: &'a str,
}

const BRAND_COLUMNS: &str = "tenant_id, folded, name, aliases, prompts, created_at, created_by";
const LOGO_COLUMNS: &str = "id, brand, sha256, size, format, created_at, created_by";

fn list(r: &AnyRow, i: usize) -> Result<Vec<String>> {
    let text: String = r.try_get(i)?;
    serde_json::from_str(&text).map_err(|e| StoreError::Invalid(format!("stored list: {e}")))
}

fn brand_from_row(r: &AnyRow) -> Result<Brand> {
    Ok(Brand {
        tenant_id: r.try_get(0)?,
        folded: r.try_get(1)?,
        name: r.try_get(2)?,
        aliases: list(r, 3)?,
        prompts: list(r, 4)?,
        created_at: r.try_get(5)?,
        created_by: r.try_get(6)?,
    })
}

fn logo_from_row(r: &AnyRow) -> Result<BrandLogo> {
    Ok(BrandLogo {
        id: r.try_get(0)?,
        brand: r.try_get(1)?,
        sha256: r.try_get(2)?,
        size: r.try_get(3)?,
        format: r.try_get(4)?,
        created_at: r.try_get(5)?,
        created_by: r.try_get(6)?,
    })
}

impl Store {
    /// Adds a brand; `Conflict` when the tenant has one of the same folded name, or
    /// [`MAX_BRANDS`] already (checked in the insert itself).
    pub async fn create_brand(
        &self,
        tenant_id: &str,
        name: &str,
        aliases: &[String],
        prompts: &[String],
        created_by: &str,
    ) -> Result<Brand> {
        let folded = fold_brand(name);
        if folded.is_empty() {
            return Err(StoreError::Invalid(
                "a brand name needs a letter or digit".into(),
            ));
        }
        let json = |v: &[String]| serde_json::to_string(v).unwrap_or_else(|_| "[]".into());
        let inserted = sqlx::query(
            "INSERT INTO brands (tenant_id, folded, name, aliases, prompts, created_at, created_by) \
             SELECT $1, $2, $3, $4, $5, $6, $7 \
             WHERE (SELECT COUNT(*) FROM brands WHERE tenant_id = $1) < $8 \
             ON CONFLICT (tenant_id, folded) DO NOTHING",
        )
        .bind(tenant_id)
        .bind(&folded)
        .bind(name)
        .bind(json(aliases))
        .bind(json(prompts))
        .bind(now_ms())
        .bind(created_by)
        .bind(MAX_BRANDS)
        .execute(&self.pool)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(match self.brand(tenant_id, &folded).await? {
                Some(existing) => StoreError::Conflict(format!(
                    "the brand '{}' exists already (brand:{folded})",
                    existing.name
                )),
                None => {
                    StoreError::Conflict(format!("a tenant may have at most {MAX_BRANDS} brands"))
                }
            });
        }
        self.brand(tenant_id, &folded)
            .await?
            .ok_or(StoreError::NotFound("brand"))
    }

    /// The tenant's brands, by folded name.
    pub async fn brands(&self, tenant_id: &str) -> Result<Vec<Brand>> {
        sqlx::query(&format!(
            "SELECT {BRAND_COLUMNS} FROM brands WHERE tenant_id = $1 ORDER BY folded"
        ))
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(brand_from_row)
        .collect()
    }

    /// One of the tenant's brands, by any spelling of its name.
    pub async fn brand(&self, tenant_id: &str, name: &str) -> Result<Option<Brand>> {
        sqlx::query(&format!(
            "SELECT {BRAND_COLUMNS} FROM brands WHERE tenant_id = $1 AND folded = $2"
        ))
        .bind(tenant_id)
        .bind(fold_brand(name))
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(brand_from_row)
        .transpose()
    }

    /// Deletes a brand and its logos; the logos' hashes (to remove files no one else uses), or
    /// `NotFound`.
    pub async fn delete_brand(&self, tenant_id: &str, name: &str) -> Result<Vec<String>> {
        let folded = fold_brand(name);
        let mut tx = self.pool.begin().await?;
        let hashes: Vec<String> =
            sqlx::query("SELECT sha256 FROM brand_logos WHERE tenant_id = $1 AND brand = $2")
                .bind(tenant_id)
                .bind(&folded)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| r.try_get(0))
                .collect::<std::result::Result<_, _>>()?;
        sqlx::query("DELETE FROM brand_logos WHERE tenant_id = $1 AND brand = $2")
            .bind(tenant_id)
            .bind(&folded)
            .execute(&mut *tx)
            .await?;
        let deleted = sqlx::query("DELETE FROM brands WHERE tenant_id = $1 AND folded = $2")
            .bind(tenant_id)
            .bind(&folded)
            .execute(&mut *tx)
            .await?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::NotFound("brand"));
        }
        tx.commit().await?;
        Ok(hashes)
    }

    /// Adds a reference logo to one of the tenant's brands, within [`MAX_LOGOS_PER_BRAND`] and
    /// [`MAX_LOGOS`] (checked in the insert itself).
    pub async fn add_brand_logo(&self, new: NewLogo<'_>) -> Result<BrandLogo> {
        let folded = fold_brand(new.brand);
        if self.brand(new.tenant_id, &folded).await?.is_none() {
            return Err(StoreError::NotFound("brand"));
        }
        let id = new_id("logo");
        let inserted = sqlx::query(
            "INSERT INTO brand_logos (id, tenant_id, brand, sha256, size, format, created_at, created_by) \
             SELECT $1, $2, $3, $4, $5, $6, $7, $8 \
             WHERE (SELECT COUNT(*) FROM brand_logos WHERE tenant_id = $2 AND brand = $3) < $9 \
             AND (SELECT COUNT(*) FROM brand_logos WHERE tenant_id = $2) < $10",
        )
        .bind(&id)
        .bind(new.tenant_id)
        .bind(&folded)
        .bind(new.sha256)
        .bind(new.size)
        .bind(new.format)
        .bind(now_ms())
        .bind(new.created_by)
        .bind(MAX_LOGOS_PER_BRAND)
        .bind(MAX_LOGOS)
        .execute(&self.pool)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "a brand may have at most {MAX_LOGOS_PER_BRAND} logos, a tenant {MAX_LOGOS}"
            )));
        }
        self.brand_logo(new.tenant_id, &id)
            .await?
            .ok_or(StoreError::NotFound("logo"))
    }

    /// The tenant's logos, of one brand or (`None`) all, oldest first.
    pub async fn brand_logos(
        &self,
        tenant_id: &str,
        brand: Option<&str>,
    ) -> Result<Vec<BrandLogo>> {
        sqlx::query(&format!(
            "SELECT {LOGO_COLUMNS} FROM brand_logos WHERE tenant_id = $1 AND ($2 = '' OR brand = $2) \
             ORDER BY created_at, id"
        ))
        .bind(tenant_id)
        .bind(brand.map(fold_brand).unwrap_or_default())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(logo_from_row)
        .collect()
    }

    /// One of the tenant's logos.
    pub async fn brand_logo(&self, tenant_id: &str, id: &str) -> Result<Option<BrandLogo>> {
        sqlx::query(&format!(
            "SELECT {LOGO_COLUMNS} FROM brand_logos WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(logo_from_row)
        .transpose()
    }

    /// Deletes one of the tenant's logos (of `brand`); the deleted row, or `NotFound`.
    pub async fn delete_brand_logo(
        &self,
        tenant_id: &str,
        brand: &str,
        id: &str,
    ) -> Result<BrandLogo> {
        let logo = self
            .brand_logo(tenant_id, id)
            .await?
            .filter(|l| l.brand == fold_brand(brand))
            .ok_or(StoreError::NotFound("logo"))?;
        sqlx::query("DELETE FROM brand_logos WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(logo)
    }

    /// Whether any tenant's logo is kept in the file `sha256`.
    pub async fn logo_file_in_use(&self, sha256: &str) -> Result<bool> {
        let row = sqlx::query("SELECT COUNT(*) FROM brand_logos WHERE sha256 = $1")
            .bind(sha256)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>(0)? > 0)
    }
}
