//! Connecting to PostgreSQL: create the database when missing, then migrate.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

pub fn options(url: &str) -> anyhow::Result<PgConnectOptions> {
    PgConnectOptions::from_str(url).context("DATABASE_URL is not a valid PostgreSQL URL")
}

/// Creates the database named in `opts` if it does not exist, connecting to
/// the `postgres` maintenance database to do so.
pub async fn ensure_database(opts: &PgConnectOptions) -> anyhow::Result<()> {
    let name = opts.get_database().unwrap_or("postgres").to_owned();
    let mut conn = opts
        .clone()
        .database("postgres")
        .connect()
        .await
        .with_context(|| {
            format!(
                "cannot reach PostgreSQL at {}:{}",
                opts.get_host(),
                opts.get_port()
            )
        })?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut conn)
            .await?;
    if !exists {
        sqlx::query(&format!("CREATE DATABASE {}", quoted(&name)))
            .execute(&mut conn)
            .await
            .with_context(|| format!("creating database {name}"))?;
        tracing::info!(database = %name, "created database");
    }
    conn.close().await.ok();
    Ok(())
}

/// A pool that fails fast while the database is down (requests answer 503)
/// and reconnects by itself when it returns.
pub fn pool(opts: PgConnectOptions, max_connections: u32) -> PgPool {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(3))
        .test_before_acquire(true)
        .connect_lazy_with(opts)
}

/// Creates the database if needed, applies migrations and returns a pool.
pub async fn prepare(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    let opts = options(url)?;
    ensure_database(&opts).await?;
    let pool = pool(opts, max_connections);
    cab_db::MIGRATOR
        .run(&pool)
        .await
        .context("applying migrations")?;
    Ok(pool)
}

fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

async fn maintenance(server: &PgConnectOptions) -> anyhow::Result<sqlx::PgConnection> {
    server
        .clone()
        .database("postgres")
        .connect()
        .await
        .with_context(|| {
            format!(
                "cannot reach PostgreSQL at {}:{}",
                server.get_host(),
                server.get_port()
            )
        })
}

/// Whether connecting failed because the database does not exist.
pub fn is_missing_database(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.code().as_deref() == Some("3D000"))
}

const SCRATCH_MARK: &str = "__building_";

/// A fresh name for a database in which the board `name` is built before it
/// is renamed into place: `<name>__building_<random>`.
pub fn scratch_name(name: &str) -> String {
    let suffix = format!(
        "{SCRATCH_MARK}{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    // PostgreSQL names are at most 63 bytes.
    let keep = name
        .char_indices()
        .map(|(i, c)| i + c.len_utf8())
        .take_while(|end| end + suffix.len() <= 63)
        .last()
        .unwrap_or(0);
    format!("{}{suffix}", &name[..keep])
}

/// Holds a PostgreSQL advisory lock named `key` for as long as the returned
/// connection is open, so that two processes preparing the same database
/// take turns.
pub async fn hold_lock(server: &PgConnectOptions, key: &str) -> anyhow::Result<sqlx::PgConnection> {
    let mut conn = maintenance(server).await?;
    sqlx::query("SELECT pg_advisory_lock(hashtextextended($1, 0))")
        .bind(key)
        .execute(&mut conn)
        .await
        .context("waiting for another `cab demo` on the same database")?;
    Ok(conn)
}

/// Drops the scratch databases for `name` that a killed run left behind.
/// Call it holding the lock for `name`: no other run is building one then.
pub async fn drop_scratch(server: &PgConnectOptions, name: &str) -> anyhow::Result<()> {
    let mut conn = maintenance(server).await?;
    let scratch = scratch_name(name);
    let prefix = &scratch[..scratch.find(SCRATCH_MARK).unwrap_or(0) + SCRATCH_MARK.len()];
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname::text FROM pg_database WHERE starts_with(datname, $1)")
            .bind(prefix)
            .fetch_all(&mut conn)
            .await?;
    for old in names {
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quoted(&old)
        ))
        .execute(&mut conn)
        .await
        .with_context(|| format!("dropping the abandoned database {old}"))?;
    }
    conn.close().await.ok();
    Ok(())
}

pub async fn create_database(server: &PgConnectOptions, name: &str) -> anyhow::Result<()> {
    let mut conn = maintenance(server).await?;
    sqlx::query(&format!("CREATE DATABASE {}", quoted(name)))
        .execute(&mut conn)
        .await
        .with_context(|| format!("creating database {name}"))?;
    conn.close().await.ok();
    Ok(())
}

pub async fn drop_database(server: &PgConnectOptions, name: &str) -> anyhow::Result<()> {
    let mut conn = maintenance(server).await?;
    sqlx::query(&format!(
        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
        quoted(name)
    ))
    .execute(&mut conn)
    .await
    .with_context(|| format!("dropping database {name}"))?;
    conn.close().await.ok();
    Ok(())
}

/// Puts the database `from` in the place of `to`, dropping whatever `to`
/// held. The rename is atomic: `to` is never seen half-built.
pub async fn replace_database(
    server: &PgConnectOptions,
    from: &str,
    to: &str,
) -> anyhow::Result<()> {
    let mut conn = maintenance(server).await?;
    sqlx::query(&format!(
        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
        quoted(to)
    ))
    .execute(&mut conn)
    .await
    .with_context(|| format!("dropping database {to}"))?;
    sqlx::query(&format!(
        "ALTER DATABASE {} RENAME TO {}",
        quoted(from),
        quoted(to)
    ))
    .execute(&mut conn)
    .await
    .with_context(|| format!("renaming database {from} to {to}"))?;
    conn.close().await.ok();
    Ok(())
}
