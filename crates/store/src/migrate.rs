//! A small migrator: numbered SQL files compiled into the binary, applied in order inside a
//! transaction, with the applied version recorded in `keyscope_schema`. (sqlx's own migrator
//! needs its macros crate; this keeps one set of files for both databases with less build.)

use sqlx::{AnyPool, Row};

use crate::StoreError;

/// The migrations, in order. Never edit one that has shipped: add a new one.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/0001_initial.sql")),
    (2, include_str!("../migrations/0002_mail.sql")),
    (3, include_str!("../migrations/0003_response.sql")),
];

/// Applies every migration newer than the database's version.
pub(crate) async fn apply(pool: &AnyPool) -> Result<(), StoreError> {
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS keyscope_schema (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )
    .execute(pool)
    .await
    .map_err(|e| StoreError::Migration(e.to_string()))?;
    for &(version, sql) in MIGRATIONS {
        // Two processes may start together: the loser of the race sees the version row (or
        // its CREATE TABLE fails) and re-checks rather than failing.
        for attempt in 0..3 {
            if applied(pool, version).await? {
                break;
            }
            match apply_one(pool, version, sql).await {
                Ok(()) => break,
                Err(e) if attempt < 2 => {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    if applied(pool, version).await? {
                        break;
                    }
                    drop(e);
                }
                Err(e) => return Err(e),
            }
        }
    }
    let newest = newest(pool).await?;
    let known = MIGRATIONS.last().map_or(0, |m| m.0);
    if newest > known {
        return Err(StoreError::Migration(format!(
            "the database has schema version {newest}, newer than this program's {known}; upgrade keyscope"
        )));
    }
    Ok(())
}

async fn applied(pool: &AnyPool, version: i64) -> Result<bool, StoreError> {
    let row = sqlx::query("SELECT COUNT(*) FROM keyscope_schema WHERE version = $1")
        .bind(version)
        .fetch_one(pool)
        .await?;
    Ok(row.try_get::<i64, _>(0)? > 0)
}

async fn newest(pool: &AnyPool) -> Result<i64, StoreError> {
    let row = sqlx::query("SELECT COALESCE(MAX(version), 0) FROM keyscope_schema")
        .fetch_one(pool)
        .await?;
    Ok(row.try_get::<i64, _>(0)?)
}

async fn apply_one(pool: &AnyPool, version: i64, sql: &str) -> Result<(), StoreError> {
    let migration = |e: sqlx::Error| StoreError::Migration(format!("version {version}: {e}"));
    let mut tx = pool.begin().await.map_err(migration)?;
    sqlx::query("INSERT INTO keyscope_schema (version, applied_at) VALUES ($1, $2)")
        .bind(version)
        .bind(crate::model::unix_now())
        .execute(&mut *tx)
        .await
        .map_err(migration)?;
    sqlx::raw_sql(sql)
        .execute(&mut *tx)
        .await
        .map_err(migration)?;
    tx.commit().await.map_err(migration)?;
    Ok(())
}
