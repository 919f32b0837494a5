//! Least privilege in the database: `cab migrate` with the owner's URL hands
//! every object to `cab_owner` and lets the serving role (`cab_app`) only
//! read and append to the audit trail; that role cannot switch the trail's
//! protections off, and CAB runs as it end to end.
//!
//! Roles are cluster-wide, so every test here shares `cab_owner` and
//! `cab_app` and sets them up alongside the others: that is the race the
//! set-up must survive.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use sqlx::{Connection, PgConnection, PgPool};

use crate::audit::database_url;
use crate::cli::{GOOD_KEY, ServerProcess};

const APP_PASSWORD: &str = "cab-app-password-for-tests";

/// The serving role's URL for `database` on the test server.
fn app_url_for(pool: &PgPool, database: &str) -> String {
    let opts = pool.connect_options();
    format!(
        "postgres://cab_app:{APP_PASSWORD}@{}:{}/{database}",
        opts.get_host(),
        opts.get_port()
    )
}

/// The serving role's URL for this test's database.
fn app_url(pool: &PgPool) -> String {
    app_url_for(pool, pool.connect_options().get_database().unwrap())
}

/// The same server and database as `url`, another database.
fn with_database(url: &str, database: &str) -> String {
    let (base, _) = url.rsplit_once('/').unwrap();
    format!("{base}/{database}")
}

/// Runs `cab` with these environment variables; (success, stdout, stderr).
fn cab_with(env: &[(&str, &str)], args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cab"));
    cmd.args(args)
        .env_remove("CAB_MIGRATE_DATABASE_URL")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    if let Some(input) = stdin {
        writeln!(child.stdin.take().unwrap(), "{input}").unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `cab migrate` as an operator runs it: the superuser migrates, CAB serves
/// as `cab_app`.
fn migrate(owner_url: &str, app_url: &str) -> String {
    let (ok, stdout, stderr) = cab_with(
        &[
            ("CAB_MIGRATE_DATABASE_URL", owner_url),
            ("DATABASE_URL", app_url),
        ],
        &["migrate"],
        None,
    );
    assert!(ok, "cab migrate failed: {stderr}");
    stdout
}

/// `cab serve` on a free port with these settings; the process, its base
/// URL and, once it has stopped, everything it logged.
fn serve(env: &[(&str, &str)]) -> (ServerProcess, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cab"));
    cmd.arg("serve")
        .env_remove("CAB_MIGRATE_DATABASE_URL")
        .env("CAB_LISTEN", "127.0.0.1:0")
        .env("CAB_SECRET_KEY", GOOD_KEY)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let mut server = ServerProcess(child);
    let Some(url) = line.trim().strip_prefix("CAB listening on ") else {
        server.terminate();
        panic!("cab serve did not start: {}", logged(&mut server));
    };
    (server, url.to_owned())
}

/// What a server wrote on stderr; call it after it has stopped.
fn logged(server: &mut ServerProcess) -> String {
    let mut err = String::new();
    if let Some(mut stderr) = server.0.stderr.take() {
        stderr.read_to_string(&mut err).unwrap();
    }
    err
}

/// The statement's refusal, asserting it was refused by the privilege
/// system (42501) and not merely by the audit triggers, which answer with
/// the same code but say "append-only".
async fn refused(conn: &mut PgConnection, sql: &str) -> String {
    let err = match sqlx::raw_sql(sql).execute(&mut *conn).await {
        Ok(_) => panic!("the serving role was allowed to run: {sql}"),
        Err(sqlx::Error::Database(e)) => e,
        Err(e) => panic!("{sql}: unexpected error {e}"),
    };
    assert_eq!(err.code().as_deref(), Some("42501"), "{sql}: {err}");
    let message = err.message().to_owned();
    assert!(
        !message.contains("append-only"),
        "{sql} reached the trigger; the privileges should refuse it first: {message}"
    );
    message
}

/// Every privilege a role could hold on a table, and whether `role` holds it.
async fn privileges(pool: &PgPool, role: &str, table: &str) -> Vec<&'static str> {
    let mut held = Vec::new();
    for p in [
        "SELECT",
        "INSERT",
        "UPDATE",
        "DELETE",
        "TRUNCATE",
        "REFERENCES",
        "TRIGGER",
    ] {
        let has: bool = sqlx::query_scalar("SELECT has_table_privilege($1, $2, $3)")
            .bind(role)
            .bind(table)
            .bind(p)
            .fetch_one(pool)
            .await
            .unwrap();
        if has {
            held.push(p);
        }
    }
    held
}

/// Checks a SCRAM-SHA-256 verifier as PostgreSQL stores it against a
/// password, recomputing it with the verifier's own salt.
fn verifier_matches(stored: &str, password: &str) -> bool {
    let salt = stored
        .strip_prefix("SCRAM-SHA-256$4096:")
        .and_then(|rest| rest.split('$').next())
        .unwrap_or_else(|| panic!("not a SCRAM verifier: {stored}"));
    let salt = STANDARD.decode(salt).unwrap();
    cab_server::db::roles::scram_sha256_verifier(password, &salt).as_deref() == Some(stored)
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn the_serving_role_cannot_alter_or_disable_the_audit_trail(pool: PgPool) {
    // The database was migrated by the superuser, as before the roles were
    // split: `cab migrate` hands it over.
    let said = migrate(&database_url(&pool), &app_url(&pool));
    assert!(
        said.contains("cab_owner") && said.contains("cab_app"),
        "{said}"
    );

    // cab_owner owns the database and everything in it.
    let database_owner: String = sqlx::query_scalar(
        "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = current_database()",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(database_owner, "cab_owner");
    let not_owned: Vec<String> = sqlx::query_scalar(
        "SELECT relname::text FROM pg_class
         WHERE relnamespace = 'public'::regnamespace AND relowner <> 'cab_owner'::regrole
         UNION ALL
         SELECT proname::text FROM pg_proc
         WHERE pronamespace = 'public'::regnamespace AND proowner <> 'cab_owner'::regrole",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(
        not_owned.is_empty(),
        "not owned by cab_owner: {not_owned:?}"
    );

    // cab_app: an ordinary login role, with exactly the grants CAB needs.
    let (superuser, createrole, member): (bool, bool, bool) = sqlx::query_as(
        "SELECT rolsuper, rolcreaterole, pg_has_role('cab_app', 'cab_owner', 'MEMBER')
         FROM pg_roles WHERE rolname = 'cab_app'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(!superuser && !createrole && !member);
    assert_eq!(
        privileges(&pool, "cab_app", "audit_events").await,
        ["SELECT", "INSERT"]
    );
    assert_eq!(
        privileges(&pool, "cab_app", "audit_head").await,
        ["SELECT", "UPDATE"]
    );
    assert_eq!(
        privileges(&pool, "cab_app", "_sqlx_migrations").await,
        ["SELECT"]
    );
    assert_eq!(
        privileges(&pool, "cab_app", "changes").await,
        ["SELECT", "INSERT", "UPDATE", "DELETE"]
    );
    // The password written in DATABASE_URL, stored as its SCRAM verifier.
    let stored: String =
        sqlx::query_scalar("SELECT rolpassword FROM pg_authid WHERE rolname = 'cab_app'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(verifier_matches(&stored, APP_PASSWORD), "{stored}");

    let events_before: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events")
        .fetch_one(&pool)
        .await
        .unwrap();
    let mut app = PgConnection::connect(&app_url(&pool)).await.unwrap();
    let me: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&mut app)
        .await
        .unwrap();
    assert_eq!(me, "cab_app");
    // What it takes to switch the protections off, or to rewrite the trail.
    for sql in [
        "ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only",
        "ALTER TABLE audit_events DISABLE TRIGGER USER",
        "ALTER TABLE audit_events DISABLE TRIGGER ALL",
        "DROP TRIGGER audit_events_append_only ON audit_events",
        "DROP TRIGGER audit_events_no_truncate ON audit_events",
        "UPDATE audit_events SET action = 'forged'",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
        "ALTER TABLE audit_events OWNER TO cab_app",
        "DROP TABLE audit_events",
        "CREATE OR REPLACE FUNCTION audit_refuse_change() RETURNS trigger \
         LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
        "ALTER TABLE audit_head DISABLE TRIGGER USER",
        "DROP TRIGGER audit_head_forward ON audit_head",
        "DELETE FROM audit_head",
        "TRUNCATE audit_head",
        // Triggers do not fire in replica mode; only a superuser may set it.
        "SET session_replication_role = replica",
        "SET ROLE cab_owner",
        "GRANT cab_owner TO cab_app",
        "CREATE TABLE sneaky (id int)",
    ] {
        refused(&mut app, sql).await;
    }
    // The head still moves one step at a time only: a jump is refused by
    // its trigger.
    let err = sqlx::query("UPDATE audit_head SET seq = seq + 5")
        .execute(&mut app)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("only moves forward"), "{err}");
    app.close().await.unwrap();

    let events_after: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(events_before, events_after);
    let (ok, stdout, stderr) = cab_with(
        &[("DATABASE_URL", &app_url(&pool))],
        &["audit", "verify"],
        None,
    );
    assert!(
        ok && stdout.contains("audit chain intact"),
        "{stdout}{stderr}"
    );

    // A table a later migration creates comes with the ordinary grants, its
    // sequence included.
    let mut owner = pool.acquire().await.unwrap();
    sqlx::raw_sql(
        "SET ROLE cab_owner; CREATE TABLE later_feature (id bigserial PRIMARY KEY); RESET ROLE",
    )
    .execute(&mut *owner)
    .await
    .unwrap();
    drop(owner);
    assert_eq!(
        privileges(&pool, "cab_app", "later_feature").await,
        ["SELECT", "INSERT", "UPDATE", "DELETE"]
    );
    let next: bool = sqlx::query_scalar(
        "SELECT has_sequence_privilege('cab_app', 'later_feature_id_seq', 'USAGE')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(next);

    // Running it again changes nothing.
    migrate(&database_url(&pool), &app_url(&pool));
    assert_eq!(
        privileges(&pool, "cab_app", "audit_events").await,
        ["SELECT", "INSERT"]
    );
    assert_eq!(
        privileges(&pool, "cab_app", "later_feature").await,
        ["SELECT", "INSERT", "UPDATE", "DELETE"]
    );
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn cab_serves_as_the_serving_role_and_warns_when_it_could_disable_the_trail(pool: PgPool) {
    let owner_url = database_url(&pool);
    let app_url = app_url(&pool);
    // `cab serve` given both URLs migrates as the owner, then serves as cab_app.
    let (mut server, url) = serve(&[
        ("CAB_MIGRATE_DATABASE_URL", &owner_url),
        ("DATABASE_URL", &app_url),
    ]);
    let (ok, _, stderr) = cab_with(
        &[("DATABASE_URL", &app_url)],
        &[
            "user",
            "add",
            "erin",
            "--role",
            "engineer",
            "--password-stdin",
        ],
        Some("erin-long-password"),
    );
    assert!(ok, "{stderr}");

    let http = reqwest::Client::new();
    let ready = http.get(format!("{url}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200, "{}", ready.text().await.unwrap());
    let token: Value = http
        .post(format!("{url}/api/v1/auth/token"))
        .json(&serde_json::json!({"username": "erin", "password": "erin-long-password"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap().to_owned();
    let filed = http
        .post(format!("{url}/api/v1/changes"))
        .bearer_auth(&token)
        .json(&crate::changes::complete_change(
            "Rotate the edge certificates",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(filed.status(), 201, "{}", filed.text().await.unwrap());
    let change: Value = filed.json().await.unwrap();
    let id = change["id"].as_str().unwrap();
    let submitted = http
        .post(format!("{url}/api/v1/changes/{id}/submit"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(submitted.status(), 200);
    assert!(server.terminate().success());
    let log = logged(&mut server);
    assert!(
        !log.contains("switch off"),
        "no warning for the serving role: {log}"
    );

    // The trail holds what happened, and verifies as the serving role.
    let actions: Vec<String> =
        sqlx::query_scalar("SELECT action FROM audit_events WHERE entity_id = $1 ORDER BY seq")
            .bind(id)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(actions, ["change.created", "change.submitted"]);
    let (ok, stdout, stderr) = cab_with(&[("DATABASE_URL", &app_url)], &["audit", "verify"], None);
    assert!(
        ok && stdout.contains("audit chain intact"),
        "{stdout}{stderr}"
    );

    // Served as the superuser, it still works and says what is wrong.
    let (mut server, url) = serve(&[("DATABASE_URL", &owner_url)]);
    let ready = http.get(format!("{url}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    assert!(server.terminate().success());
    let log = logged(&mut server);
    assert!(
        log.contains("is a superuser")
            && log.contains("switch off the audit trail's append-only triggers")
            && log.contains("CAB_MIGRATE_DATABASE_URL"),
        "{log}"
    );
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn migrate_sets_up_a_new_database_and_the_serving_role_cannot_migrate(pool: PgPool) {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let (fresh, empty) = (format!("cab_it_{suffix}"), format!("cab_it_e{suffix}"));
    let owner_url = database_url(&pool);

    // A database that does not exist yet: created, owned by cab_owner, migrated.
    migrate(
        &with_database(&owner_url, &fresh),
        &app_url_for(&pool, &fresh),
    );
    let owner: Option<String> = sqlx::query_scalar(
        "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = $1",
    )
    .bind(&fresh)
    .fetch_optional(&pool)
    .await
    .unwrap();
    assert_eq!(owner.as_deref(), Some("cab_owner"));
    let (ok, stdout, stderr) = cab_with(
        &[("DATABASE_URL", &app_url_for(&pool, &fresh))],
        &["audit", "verify"],
        None,
    );
    assert!(
        ok && stdout.contains("audit chain intact"),
        "{stdout}{stderr}"
    );

    // The serving role alone cannot migrate an empty database, and says
    // what to do instead.
    sqlx::query(&format!("CREATE DATABASE \"{empty}\""))
        .execute(&pool)
        .await
        .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cab"));
    let out = cmd
        .arg("serve")
        .env_remove("CAB_MIGRATE_DATABASE_URL")
        .env("DATABASE_URL", app_url_for(&pool, &empty))
        .env("CAB_SECRET_KEY", GOOD_KEY)
        .env("CAB_LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("not applied") && err.contains("CAB_MIGRATE_DATABASE_URL"),
        "{err}"
    );

    // The owner and the serving role must be different accounts.
    let (ok, _, stderr) = cab_with(
        &[
            ("CAB_MIGRATE_DATABASE_URL", &owner_url),
            ("DATABASE_URL", &owner_url),
        ],
        &["migrate"],
        None,
    );
    assert!(!ok && stderr.contains("same account"), "{stderr}");

    for db in [&fresh, &empty] {
        sqlx::query(&format!("DROP DATABASE \"{db}\" WITH (FORCE)"))
            .execute(&pool)
            .await
            .unwrap();
    }
}

#[sqlx::test]
async fn the_password_verifier_is_the_one_postgresql_computes(pool: PgPool) {
    // PostgreSQL hashes a password given in clear with a salt of its own;
    // recomputing with that salt must give the same verifier.
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("CREATE ROLE cab_scram_probe PASSWORD 'Tr0ub4dor&3 with spaces'")
        .execute(&mut *tx)
        .await
        .unwrap();
    let stored: String =
        sqlx::query_scalar("SELECT rolpassword FROM pg_authid WHERE rolname = 'cab_scram_probe'")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    tx.rollback().await.unwrap();
    assert!(verifier_matches(&stored, "Tr0ub4dor&3 with spaces"));
    assert!(!verifier_matches(&stored, "Tr0ub4dor&3 with spaces!"));
}
