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
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        sqlx::query(&format!("CREATE DATABASE {quoted}"))
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
