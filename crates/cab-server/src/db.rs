//! Connecting to PostgreSQL: create the database when missing, migrate, and
//! know what the account CAB serves as could do to the audit trail.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};

use crate::config::{DatabaseArgs, MigrateArgs};

pub mod health;
pub mod roles;

pub fn options(url: &str) -> anyhow::Result<PgConnectOptions> {
    options_for("DATABASE_URL", url)
}

/// Parses the URL of the setting `name`; the message names the setting,
/// never the URL (it may hold a password).
pub fn options_for(name: &str, url: &str) -> anyhow::Result<PgConnectOptions> {
    PgConnectOptions::from_str(url).with_context(|| format!("{name} is not a valid PostgreSQL URL"))
}

/// Creates the database named in `opts` if it does not exist, connecting to
/// the `postgres` maintenance database to do so. Another process creating
/// it at the same moment is no error.
pub async fn ensure_database(opts: &PgConnectOptions) -> anyhow::Result<()> {
    let name = opts.get_database().unwrap_or("postgres").to_owned();
    let mut conn = maintenance(opts).await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut conn)
            .await?;
    if !exists {
        match sqlx::query(&format!("CREATE DATABASE {}", quoted(&name)))
            .execute(&mut conn)
            .await
        {
            Ok(_) => tracing::info!(database = %name, "created database"),
            // Created meanwhile: "already exists", or the catalogue's unique
            // index when both got past the check above.
            Err(sqlx::Error::Database(e))
                if matches!(e.code().as_deref(), Some("42P04" | "23505")) => {}
            Err(e) => return Err(e).with_context(|| format!("creating database {name}")),
        }
    }
    conn.close().await.ok();
    Ok(())
}

/// How long a pooled connection may sit idle before it is checked again.
const IDLE_BEFORE_PING: Duration = Duration::from_secs(1);

/// A pool that reconnects by itself when the database returns. A request
/// waits at most the acquire timeout for a connection; once the database is
/// known to be down, requests do not wait at all (see [`health`]).
pub fn pool(opts: PgConnectOptions, max_connections: u32) -> PgPool {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(3))
        // A connection in steady use is known to work; one that sat idle
        // (through a database restart, say) is checked before it is handed
        // out, so a request never gets a dead one. Pinging every connection
        // on every acquire would cost each request a round trip or two.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= IDLE_BEFORE_PING {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .connect_lazy_with(opts)
}

/// Opens the database for a `cab` command: a pool connecting as the account
/// in `DATABASE_URL`, with every migration applied.
///
/// - Given `CAB_MIGRATE_DATABASE_URL`, the roles are set up and the
///   migrations applied through it first ([`roles::migrate`]).
/// - Otherwise an account that owns CAB's tables (or will, on an empty
///   database), or a superuser, creates the database if missing and applies
///   the migrations itself, as before the roles were split.
/// - Any other account only checks that nothing is pending, and refuses to
///   go on if something is: it cannot migrate, and must not be able to.
pub async fn open(db: &DatabaseArgs, migrate: Option<&MigrateArgs>) -> anyhow::Result<PgPool> {
    let opts = options(&db.database_url)?;
    if let Some(MigrateArgs {
        migrate_database_url: Some(admin_url),
        owner_role,
    }) = migrate
    {
        let admin = options_for("CAB_MIGRATE_DATABASE_URL", admin_url)?;
        let password = roles::url_password(&db.database_url);
        roles::migrate(&admin, &opts, password.as_deref(), owner_role).await?;
        return Ok(pool(opts, db.db_max_connections));
    }
    let mut conn = match opts.connect().await {
        Ok(conn) => conn,
        Err(e) if is_missing_database(&e) => {
            ensure_database(&opts).await?;
            opts.connect()
                .await
                .context("connecting to the new database")?
        }
        Err(e) => {
            return Err(e).with_context(|| {
                format!(
                    "cannot reach PostgreSQL at {}:{}",
                    opts.get_host(),
                    opts.get_port()
                )
            });
        }
    };
    let account = Account::of(&mut conn).await?;
    if account.may_migrate() {
        migrate_as(&mut conn, account.owner_to_act_as()).await?;
    } else {
        let pending = cab_db::health::pending_migrations(&mut conn).await?;
        anyhow::ensure!(
            pending.is_empty(),
            "{} migration(s) not applied yet, and {} may not apply them: run `cab migrate` with \
             CAB_MIGRATE_DATABASE_URL set to an account that owns CAB's tables (or may create \
             roles) first",
            pending.len(),
            account.name
        );
    }
    conn.close().await.ok();
    Ok(pool(opts, db.db_max_connections))
}

/// Applies the migrations on `conn`, acting as `owner` when given, so that
/// whatever they create belongs to the role that owns the rest.
async fn migrate_as(conn: &mut PgConnection, owner: Option<&str>) -> anyhow::Result<()> {
    if let Some(owner) = owner {
        sqlx::query(&format!("SET ROLE {}", quoted(owner)))
            .execute(&mut *conn)
            .await
            .with_context(|| format!("acting as {owner}, the owner of CAB's tables"))?;
    }
    cab_db::MIGRATOR
        .run(&mut *conn)
        .await
        .context("applying migrations")?;
    if owner.is_some() {
        sqlx::query("RESET ROLE").execute(&mut *conn).await?;
    }
    Ok(())
}

/// The account a connection logs in as, and what it may do to the audit
/// trail (`audit_events`) and the schema.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Account {
    pub name: String,
    pub superuser: bool,
    pub createrole: bool,
    /// Whether `audit_events` exists.
    pub has_audit: bool,
    /// The audit table's owner, when this account is that role or a member
    /// of it (a superuser is a member of every role).
    pub audit_owner: Option<String>,
    /// Holds UPDATE, DELETE, TRUNCATE or TRIGGER on the audit table.
    pub may_change_audit: bool,
    /// May create tables in schema `public`.
    pub may_create: bool,
}

impl Account {
    pub async fn of(conn: &mut PgConnection) -> sqlx::Result<Self> {
        sqlx::query_as(
            "SELECT current_user::text AS name, r.rolsuper AS superuser,
                    r.rolcreaterole AS createrole, c.oid IS NOT NULL AS has_audit,
                    CASE WHEN pg_has_role(current_user, c.relowner, 'MEMBER')
                         THEN pg_get_userbyid(c.relowner)::text END AS audit_owner,
                    COALESCE(has_any_column_privilege(c.oid, 'UPDATE')
                             OR has_table_privilege(c.oid, 'DELETE, TRUNCATE, TRIGGER'), false)
                        AS may_change_audit,
                    has_schema_privilege('public', 'CREATE') AS may_create
             FROM pg_roles r LEFT JOIN pg_class c ON c.oid = to_regclass('public.audit_events')
             WHERE r.rolname = current_user",
        )
        .fetch_one(&mut *conn)
        .await
    }

    /// Whether this account applies migrations when it opens the database:
    /// it owns the tables (or will, on an empty database), or is a superuser.
    fn may_migrate(&self) -> bool {
        self.superuser || self.audit_owner.is_some() || (!self.has_audit && self.may_create)
    }

    /// The owner to act as while migrating, when that is another role.
    fn owner_to_act_as(&self) -> Option<&str> {
        self.audit_owner.as_deref().filter(|o| *o != self.name)
    }

    /// Why this account could weaken the audit trail's protections, or
    /// `None` when it holds no more than reading and appending.
    pub fn audit_exposure(&self) -> Option<String> {
        let off = "so it could switch off the audit trail's append-only triggers";
        Some(if self.superuser {
            format!("is a superuser, {off}")
        } else if let Some(owner) = &self.audit_owner {
            if *owner == self.name {
                format!("owns the audit table, {off}")
            } else {
                format!("is a member of {owner}, which owns the audit table, {off}")
            }
        } else if self.createrole {
            format!("has CREATEROLE and could make itself the audit table's owner, {off}")
        } else if self.may_change_audit {
            "holds UPDATE, DELETE, TRUNCATE or TRIGGER on the audit table, more than CAB needs"
                .to_owned()
        } else {
            return None;
        })
    }
}

fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

async fn maintenance(server: &PgConnectOptions) -> anyhow::Result<PgConnection> {
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
pub async fn hold_lock(server: &PgConnectOptions, key: &str) -> anyhow::Result<PgConnection> {
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
