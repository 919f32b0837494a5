//! Least privilege in the database: the role that owns CAB's tables and the
//! role CAB serves as.
//!
//! Owning a table is what it takes to switch its triggers off, so the account
//! that serves requests must not own the audit trail. Two roles share the
//! work:
//!
//! - the **owner** (`cab_owner` unless told otherwise, NOLOGIN) owns the
//!   database and everything in its `public` schema, and applies the
//!   migrations;
//! - the **serving role** (the user named in `DATABASE_URL`, e.g. `cab_app`)
//!   logs in, reads and writes the ordinary tables, and may only read and
//!   append to the audit trail ([`NARROW_GRANTS`]).
//!
//! [`migrate`] sets both up, connected as an account that may create roles
//! (a superuser, or a role with CREATEROLE) or as the owner itself when both
//! roles exist already. Every step checks before it changes anything, so it
//! can run again, and alongside other runs: roles are cluster-wide and many
//! databases on one server may be set up at the same time.

use std::time::Duration;

use anyhow::{Context, bail, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};

use super::quoted;

/// The owner role's name unless `CAB_OWNER_ROLE` says otherwise.
pub const DEFAULT_OWNER_ROLE: &str = "cab_owner";

/// What the serving role may do on every table in the schema that
/// [`NARROW_GRANTS`] does not name, including tables later migrations create
/// (through default privileges). Never TRUNCATE, REFERENCES or TRIGGER.
pub const ORDINARY_GRANTS: &str = "SELECT, INSERT, UPDATE, DELETE";

/// The tables on which the serving role holds less than [`ORDINARY_GRANTS`].
pub const NARROW_GRANTS: [(&str, &str); 4] = [
    // The audit trail is read and appended to, never rewritten.
    ("audit_events", "SELECT, INSERT"),
    // So are its signed checkpoints.
    ("audit_checkpoints", "SELECT, INSERT"),
    // The chain's head: one row, locked (SELECT … FOR UPDATE needs UPDATE)
    // and moved one event forward by each append; its triggers refuse
    // anything else.
    ("audit_head", "SELECT, UPDATE"),
    // Readiness compares the applied migrations with the embedded ones.
    ("_sqlx_migrations", "SELECT"),
];

/// What [`migrate`] set up.
#[derive(Debug, Clone)]
pub struct Setup {
    pub database: String,
    pub owner: String,
    pub serving: String,
}

/// The database a connection goes to: the one named, else PostgreSQL's
/// default, the user's name.
fn database_of(opts: &PgConnectOptions) -> &str {
    opts.get_database().unwrap_or(opts.get_username())
}

/// Prepares the database `serving` names for CAB to serve as `serving`'s
/// user: creates the database, the owner role and the serving role when
/// missing (the serving role with `serving_password`, when given), makes the
/// owner the owner of the database and of everything in its `public` schema,
/// applies the migrations as the owner and grants the serving role what CAB
/// needs. Connects with `admin`.
pub async fn migrate(
    admin: &PgConnectOptions,
    serving: &PgConnectOptions,
    serving_password: Option<&str>,
    owner: &str,
) -> anyhow::Result<Setup> {
    let database = database_of(serving).to_owned();
    ensure!(
        database_of(admin) == database,
        "CAB_MIGRATE_DATABASE_URL names the database {} and DATABASE_URL {database}: they must name the same one",
        database_of(admin)
    );
    let app = serving.get_username().to_owned();
    let admin = admin.clone().database(&database);
    super::ensure_database(&admin).await?;
    let mut conn = admin
        .connect()
        .await
        .with_context(|| format!("connecting to database {database} to migrate it"))?;
    let (me, me_super): (String, bool) = sqlx::query_as(
        "SELECT current_user::text, rolsuper FROM pg_roles WHERE rolname = current_user",
    )
    .fetch_one(&mut conn)
    .await?;
    ensure!(
        app != me,
        "DATABASE_URL connects as {app}, the same account as CAB_MIGRATE_DATABASE_URL: name the \
         role CAB serves as there, e.g. postgres://cab_app:PASSWORD@HOST/{database}"
    );
    ensure!(
        app != owner,
        "DATABASE_URL connects as {owner}, the role that owns CAB's tables: name another role \
         for CAB to serve as, e.g. postgres://cab_app:PASSWORD@HOST/{database}"
    );
    if owner != me {
        retrying(&mut conn, async |c| {
            ensure_role(c, owner, false, None).await
        })
        .await
        .with_context(|| format!("creating the owner role {owner}"))?;
    }
    // Refused before anything is done to it (a password set, LOGIN granted).
    refuse_powerful_serving_role(&mut conn, &app, owner).await?;
    retrying(&mut conn, async |c| {
        ensure_role(c, &app, true, serving_password).await
    })
    .await
    .with_context(|| format!("creating the serving role {app}"))?;
    refuse_powerful_serving_role(&mut conn, &app, owner).await?;
    if owner != me && !me_super {
        retrying(&mut conn, async |c| join_role(c, owner, &me).await)
            .await
            .with_context(|| format!("letting {me} act as {owner}"))?;
    }

    // One run at a time per database from here on: the ownership changes and
    // grants below update the same catalogue rows.
    sqlx::query("SELECT pg_advisory_lock(hashtextextended('cab migrate: roles', 0))")
        .execute(&mut conn)
        .await?;
    let result = async {
        adopt(&mut conn, owner, &database).await?;
        if owner != me {
            sqlx::query(&format!("SET ROLE {}", quoted(owner)))
                .execute(&mut conn)
                .await
                .with_context(|| format!("acting as {owner}"))?;
        }
        cab_db::MIGRATOR
            .run(&mut conn)
            .await
            .with_context(|| format!("applying migrations as {owner}"))?;
        grant(&mut conn, owner, &app, &database).await?;
        sqlx::query("RESET ROLE").execute(&mut conn).await?;
        anyhow::Ok(())
    }
    .await;
    // Closing the connection releases the lock whatever happened.
    conn.close().await.ok();
    result?;
    Ok(Setup {
        database,
        owner: owner.to_owned(),
        serving: app,
    })
}

/// Runs a step on cluster-wide catalogues again when a concurrent run got
/// there first (duplicate role, "tuple concurrently updated", deadlock): the
/// step checks before it changes, so the next attempt finds the work done.
async fn retrying(
    conn: &mut PgConnection,
    mut step: impl AsyncFnMut(&mut PgConnection) -> sqlx::Result<()>,
) -> anyhow::Result<()> {
    const RACES: [&str; 5] = ["42710", "23505", "XX000", "40001", "40P01"];
    let mut attempt = 0;
    loop {
        match step(&mut *conn).await {
            Err(sqlx::Error::Database(e))
                if attempt < 8 && e.code().is_some_and(|c| RACES.contains(&c.as_ref())) =>
            {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(20 * attempt)).await;
            }
            other => return Ok(other?),
        }
    }
}

/// Creates the role `name` if it does not exist; a serving role (`login`)
/// that exists without LOGIN gets it. Sets the password when one is given,
/// sending only its SCRAM verifier, so the password reaches neither the
/// server's logs nor `pg_stat_activity`. An account that may not change an
/// existing role (the owner migrating on its own, with roles someone else
/// manages) leaves its password as it is.
async fn ensure_role(
    conn: &mut PgConnection,
    name: &str,
    login: bool,
    password: Option<&str>,
) -> sqlx::Result<()> {
    let can_login: Option<bool> =
        sqlx::query_scalar("SELECT rolcanlogin FROM pg_roles WHERE rolname = $1")
            .bind(name)
            .fetch_optional(&mut *conn)
            .await?;
    match can_login {
        None => {
            let kind = if login { "LOGIN" } else { "NOLOGIN" };
            sqlx::query(&format!("CREATE ROLE {} {kind}", quoted(name)))
                .execute(&mut *conn)
                .await?;
            tracing::info!(role = %name, "created role");
        }
        Some(false) if login => {
            sqlx::query(&format!("ALTER ROLE {} LOGIN", quoted(name)))
                .execute(&mut *conn)
                .await?;
        }
        Some(_) => {}
    }
    if let Some(password) = password {
        let statement = match scram_sha256_verifier(password, &random_salt()) {
            Some(verifier) => format!("ALTER ROLE {} PASSWORD '{verifier}'", quoted(name)),
            // Not plain ASCII: PostgreSQL normalises it (SASLprep) before
            // hashing, so let the server hash it.
            None => {
                sqlx::query_scalar("SELECT format('ALTER ROLE %I PASSWORD %L', $1::text, $2::text)")
                    .bind(name)
                    .bind(password)
                    .fetch_one(&mut *conn)
                    .await?
            }
        };
        match sqlx::query(&statement).execute(&mut *conn).await {
            Err(sqlx::Error::Database(e))
                if can_login.is_some() && e.code().as_deref() == Some("42501") =>
            {
                tracing::warn!(role = %name, "may not set this role's password; it is left as it was");
            }
            other => {
                other?;
            }
        }
    }
    Ok(())
}

/// Makes `member` a member of `role` (a role with CREATEROLE may), so that it
/// can act as the owner.
async fn join_role(conn: &mut PgConnection, role: &str, member: &str) -> sqlx::Result<()> {
    let already: bool = sqlx::query_scalar("SELECT pg_has_role($1, $2, 'MEMBER')")
        .bind(member)
        .bind(role)
        .fetch_one(&mut *conn)
        .await?;
    if !already {
        sqlx::query(&format!("GRANT {} TO {}", quoted(role), quoted(member)))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Refuses a serving role that could switch the audit trail's protections
/// off: a superuser, a member of the owner, or a role with CREATEROLE (which
/// can make itself a member of the owner).
async fn refuse_powerful_serving_role(
    conn: &mut PgConnection,
    app: &str,
    owner: &str,
) -> anyhow::Result<()> {
    let found: Option<(bool, bool, bool)> = sqlx::query_as(
        "SELECT rolsuper, rolcreaterole, pg_has_role($1, $2, 'MEMBER') FROM pg_roles WHERE rolname = $1",
    )
    .bind(app)
    .bind(owner)
    .fetch_optional(&mut *conn)
    .await?;
    // Not there yet: it is created without those powers.
    let Some((superuser, createrole, member)) = found else {
        return Ok(());
    };
    let why = if superuser {
        "is a superuser"
    } else if member {
        "is a member of the owner role"
    } else if createrole {
        "has CREATEROLE, so it could make itself a member of the owner role"
    } else {
        return Ok(());
    };
    bail!(
        "the role {app} in DATABASE_URL {why}, so it could switch off the audit trail's \
         protections: CAB must serve as a role without those powers (e.g. a new role cab_app, \
         which `cab migrate` creates)"
    )
}

/// Makes `owner` the owner of the database and of everything in its `public`
/// schema that someone else owns (a database migrated before the roles were
/// split belongs to whoever migrated it).
async fn adopt(conn: &mut PgConnection, owner: &str, database: &str) -> anyhow::Result<()> {
    let database_owner: String = sqlx::query_scalar(
        "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = current_database()",
    )
    .fetch_one(&mut *conn)
    .await?;
    if database_owner != owner {
        sqlx::query(&format!(
            "ALTER DATABASE {} OWNER TO {}",
            quoted(database),
            quoted(owner)
        ))
        .execute(&mut *conn)
        .await
        .with_context(|| format!("making {owner} the owner of database {database}"))?;
    }
    let may_create: bool =
        sqlx::query_scalar("SELECT has_schema_privilege($1, 'public', 'USAGE, CREATE')")
            .bind(owner)
            .fetch_one(&mut *conn)
            .await?;
    if !may_create {
        sqlx::query(&format!(
            "GRANT USAGE, CREATE ON SCHEMA public TO {}",
            quoted(owner)
        ))
        .execute(&mut *conn)
        .await
        .with_context(|| format!("letting {owner} create tables in schema public"))?;
    }
    // The server names each object, quoted as it needs; a sequence that
    // belongs to a column follows its table, objects of extensions stay put.
    let statements: Vec<String> = sqlx::query_scalar(
        r#"SELECT format('ALTER %s %s OWNER TO %I', o.kind, o.name, $1::text)
           FROM (
               SELECT CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                                     WHEN 'S' THEN 'SEQUENCE' WHEN 'f' THEN 'FOREIGN TABLE'
                                     ELSE 'TABLE' END AS kind,
                      c.oid::regclass::text AS name, 'pg_class'::regclass AS classid, c.oid AS objid
               FROM pg_class c
               WHERE c.relnamespace = 'public'::regnamespace
                 AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
                 AND c.relowner <> to_regrole($1::text)
                 AND NOT EXISTS (SELECT 1 FROM pg_depend d
                                 WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                                   AND d.deptype IN ('a', 'i'))
               UNION ALL
               SELECT CASE p.prokind WHEN 'p' THEN 'PROCEDURE' WHEN 'a' THEN 'AGGREGATE'
                                     ELSE 'FUNCTION' END,
                      p.oid::regprocedure::text, 'pg_proc'::regclass, p.oid
               FROM pg_proc p
               WHERE p.pronamespace = 'public'::regnamespace
                 AND p.proowner <> to_regrole($1::text)
               UNION ALL
               SELECT CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END,
                      t.oid::regtype::text, 'pg_type'::regclass, t.oid
               FROM pg_type t
               WHERE t.typnamespace = 'public'::regnamespace
                 AND t.typowner <> to_regrole($1::text)
                 AND (t.typtype IN ('e', 'd', 'r')
                      OR (t.typtype = 'c'
                          AND (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c'))
           ) o
           WHERE NOT EXISTS (SELECT 1 FROM pg_depend e
                             WHERE e.classid = o.classid AND e.objid = o.objid AND e.deptype = 'e')
           ORDER BY o.kind, o.name"#,
    )
    .bind(owner)
    .fetch_all(&mut *conn)
    .await?;
    for statement in &statements {
        sqlx::query(statement)
            .execute(&mut *conn)
            .await
            .with_context(|| format!("handing CAB's objects to {owner}: {statement}"))?;
    }
    if !statements.is_empty() {
        tracing::info!(%owner, objects = statements.len(), "handed objects to the owner role");
    }
    Ok(())
}

/// Grants the serving role `app` what CAB needs and nothing more, in one
/// transaction (a server running meanwhile never sees the grants half done),
/// replacing whatever it held before; and makes tables and sequences that
/// later migrations create come with the ordinary grants. Run as the owner.
async fn grant(
    conn: &mut PgConnection,
    owner: &str,
    app: &str,
    database: &str,
) -> anyhow::Result<()> {
    let (owner, app) = (quoted(owner), quoted(app));
    let mut tx = conn.begin().await?;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT relname::text FROM pg_class
         WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p', 'v', 'm', 'f')
         ORDER BY relname",
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut statements = vec![
        format!("GRANT CONNECT ON DATABASE {} TO {app}", quoted(database)),
        format!("GRANT USAGE ON SCHEMA public TO {app}"),
        // Nobody but the owner creates objects in the schema (PostgreSQL
        // before 15 lets everyone): the serving role cannot plant a function
        // that the next migration would hand to the owner.
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC".to_owned(),
    ];
    for table in &tables {
        let narrow = NARROW_GRANTS.iter().find(|(t, _)| t == table);
        let privileges = narrow.map_or(ORDINARY_GRANTS, |(_, p)| p);
        // Nobody else gets more on the narrow tables by way of PUBLIC.
        let from = if narrow.is_some() {
            format!("PUBLIC, {app}")
        } else {
            app.clone()
        };
        let table = quoted(table);
        statements.push(format!("REVOKE ALL ON TABLE public.{table} FROM {from}"));
        statements.push(format!(
            "GRANT {privileges} ON TABLE public.{table} TO {app}"
        ));
    }
    statements.extend([
        format!("REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {app}"),
        format!("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {app}"),
        format!(
            "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public \
             GRANT {ORDINARY_GRANTS} ON TABLES TO {app}"
        ),
        format!(
            "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public \
             GRANT USAGE, SELECT ON SEQUENCES TO {app}"
        ),
    ]);
    for statement in &statements {
        sqlx::query(statement)
            .execute(&mut *tx)
            .await
            .with_context(|| format!("granting the serving role its privileges: {statement}"))?;
    }
    tx.commit().await?;
    Ok(())
}

fn random_salt() -> [u8; 16] {
    let mut salt = [0u8; 16];
    OsRng.fill_bytes(&mut salt);
    salt
}

/// The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (what
/// `psql`'s `\password` sends), with PostgreSQL's 4096 iterations. `None`
/// when the password is not plain ASCII: PostgreSQL would normalise it
/// first (SASLprep), which this does not do.
pub fn scram_sha256_verifier(password: &str, salt: &[u8]) -> Option<String> {
    const ITERATIONS: u32 = 4096;
    if !password.is_ascii() {
        return None;
    }
    let hmac = |key: &[u8], parts: &[&[u8]]| {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).ok()?;
        for part in parts {
            mac.update(part);
        }
        Some(mac.finalize().into_bytes())
    };
    // PBKDF2-HMAC-SHA-256, one block (the key is as long as the hash).
    let mut u = hmac(password.as_bytes(), &[salt, &1u32.to_be_bytes()])?;
    let mut salted = u;
    for _ in 1..ITERATIONS {
        u = hmac(password.as_bytes(), &[&u])?;
        salted.iter_mut().zip(u.iter()).for_each(|(s, x)| *s ^= x);
    }
    let client_key = hmac(&salted, &[b"Client Key"])?;
    let stored_key = Sha256::digest(client_key);
    let server_key = hmac(&salted, &[b"Server Key"])?;
    Some(format!(
        "SCRAM-SHA-256${ITERATIONS}:{}${}:{}",
        STANDARD.encode(salt),
        STANDARD.encode(stored_key),
        STANDARD.encode(server_key)
    ))
}

/// The password written in a PostgreSQL URL (`postgres://user:PASSWORD@…`
/// or `?password=…`), decoded. Only the URL counts: `PGPASSWORD` or a
/// `.pgpass` file belong to whoever runs the command, not to the role.
pub fn url_password(url: &str) -> Option<String> {
    let (_, rest) = url.split_once("://")?;
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let in_userinfo = authority
        .rsplit_once('@')
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .and_then(|(_, password)| percent_decode(password));
    let in_query = || {
        let query = rest.split_once('?')?.1.split('#').next()?;
        serde_urlencoded::from_str::<Vec<(String, String)>>(query)
            .ok()?
            .into_iter()
            .find_map(|(k, v)| (k == "password").then_some(v))
    };
    in_userinfo
        .or_else(in_query)
        .filter(|password| !password.is_empty())
}

fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = [bytes.next()?, bytes.next()?];
            out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_comes_from_the_url_only() {
        assert_eq!(
            url_password("postgres://cab_app:s3cret@db:5432/cab").as_deref(),
            Some("s3cret")
        );
        assert_eq!(
            url_password("postgres://cab_app:p%40ss%2Fw%3Ard@db/cab").as_deref(),
            Some("p@ss/w:rd")
        );
        assert_eq!(
            url_password("postgres://cab_app@db/cab?sslmode=require&password=a%26b").as_deref(),
            Some("a&b")
        );
        assert_eq!(url_password("postgres://cab_app@db/cab"), None);
        assert_eq!(url_password("postgres://cab_app:@db/cab"), None);
        assert_eq!(url_password("postgres://db/cab"), None);
    }

    #[test]
    fn scram_verifier_matches_an_independent_computation() {
        // Computed with Python's hashlib.pbkdf2_hmac and hmac for this salt.
        let salt = *b"0123456789abcdef";
        assert_eq!(
            scram_sha256_verifier("correct horse battery staple", &salt).as_deref(),
            Some(SCRAM_VECTOR)
        );
        assert_eq!(scram_sha256_verifier("pässword", &salt), None);
    }

    const SCRAM_VECTOR: &str = "SCRAM-SHA-256$4096:MDEyMzQ1Njc4OWFiY2RlZg==$\
        5uVcxEsM9g7qPWkT/Usq98S+VIB8ZwsV7h8MtqvDrsw=:w3JcoKUbh5ZrGRqalbS6V0TZabsE2hsOQi9C15FvDZk=";
}
