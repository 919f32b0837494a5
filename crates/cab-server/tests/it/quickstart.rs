//! The README's quick start, run as a newcomer runs it: the `cab` binary's
//! `demo` command on a fresh database, then every printed user signs in and
//! the board is checked against what the README promises.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use cab_domain::change::ChangeState;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};

/// PostgreSQL server the tests use (its maintenance database).
fn server_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn url_for(database: &str) -> String {
    let server = server_url();
    let base = server.rsplit_once('/').map_or(server.as_str(), |(b, _)| b);
    format!("{base}/{database}")
}

async fn admin_sql(sql: &str) {
    let mut conn = PgConnection::connect(&server_url()).await.unwrap();
    sqlx::query(sql).execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
}

async fn database_exists(name: &str) -> bool {
    let mut conn = PgConnection::connect(&server_url()).await.unwrap();
    let found: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(name)
            .fetch_one(&mut conn)
            .await
            .unwrap();
    conn.close().await.unwrap();
    found
}

/// Drops the test's databases (and any scratch copies of them) whatever happens.
struct Databases(Vec<String>);

impl Drop for Databases {
    fn drop(&mut self) {
        for name in &self.0 {
            let sql = format!(
                "SELECT format('DROP DATABASE IF EXISTS %I WITH (FORCE)', datname) \
                 FROM pg_database WHERE starts_with(datname, '{name}') \\gexec"
            );
            let _ = Command::new("psql")
                .args([&server_url(), "-q"])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .and_then(|mut c| {
                    use std::io::Write;
                    c.stdin.take().map(|mut i| writeln!(i, "{sql}"));
                    c.wait()
                });
        }
    }
}

async fn databases_starting_with(prefix: &str) -> Vec<String> {
    let mut conn = PgConnection::connect(&server_url()).await.unwrap();
    let names =
        sqlx::query_scalar("SELECT datname::text FROM pg_database WHERE starts_with(datname, $1)")
            .bind(prefix)
            .fetch_all(&mut conn)
            .await
            .unwrap();
    conn.close().await.unwrap();
    names
}

struct Demo {
    child: Child,
    url: String,
    /// username -> (role, password), as printed.
    users: BTreeMap<String, (String, String)>,
    banner: Vec<String>,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `cab demo` (with `env` on top of a clean environment) and reads what
/// it prints up to the line saying where it listens.
fn start_demo(args: &[&str], env: &[(&str, &str)]) -> Demo {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cab"));
    cmd.arg("demo")
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("CAB_SECRET_KEY")
        .env_remove("CAB_LISTEN")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start cab demo");
    let stdout: ChildStdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut banner = Vec::new();
    let mut users = BTreeMap::new();
    let url = loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("cab demo stopped; it printed: {banner:#?}"))
            .unwrap();
        banner.push(line.clone());
        if let Some(u) = line.trim().strip_prefix("CAB listening on ") {
            break u.to_owned();
        }
        let cells: Vec<&str> = line.split_whitespace().collect();
        if let [user, role, password] = cells[..]
            && user != "USERNAME"
            && line.starts_with("  ")
        {
            users.insert(user.to_owned(), (role.to_owned(), password.to_owned()));
        }
    };
    // Keep reading so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Demo {
        child,
        url,
        users,
        banner,
    }
}

async fn wait_ready(http: &reqwest::Client, url: &str) {
    for _ in 0..100 {
        if let Ok(r) = http.get(format!("{url}/readyz")).send().await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url}/readyz never answered 200");
}

async fn token(http: &reqwest::Client, url: &str, user: &str, password: &str) -> Option<String> {
    let r = http
        .post(format!("{url}/api/v1/auth/token"))
        .json(&json!({ "username": user, "password": password }))
        .send()
        .await
        .unwrap();
    if !r.status().is_success() {
        return None;
    }
    let v: Value = r.json().await.unwrap();
    Some(v["access_token"].as_str().unwrap().to_owned())
}

async fn get(http: &reqwest::Client, url: &str, bearer: &str, path: &str) -> Value {
    let r = http
        .get(format!("{url}{path}"))
        .bearer_auth(bearer)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "GET {path}: {}", r.status());
    r.json().await.unwrap()
}

/// Signs in through the sign-in form, as a person in a browser does, and
/// returns the dashboard's HTML.
async fn form_sign_in(url: &str, user: &str, password: &str) -> String {
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::limited(5))
        .build()
        .unwrap();
    let form = http
        .get(format!("{url}/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = crate::common::csrf_in(&form);
    let r = http
        .post(format!("{url}/login"))
        .form(&[
            ("_csrf", csrf.as_str()),
            ("username", user),
            ("password", password),
            ("next", "/"),
        ])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{user} signs in: {}", r.status());
    assert!(
        !r.url().path().ends_with("/login"),
        "{user} stayed on the sign-in page"
    );
    r.text().await.unwrap()
}

/// The counts per state that the README's "demo board" table promises.
fn readme_board() -> Vec<(ChangeState, usize)> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let start = readme
        .find("<!-- board:start -->")
        .expect("README marks the board table");
    let end = readme
        .find("<!-- board:end -->")
        .expect("README marks the table's end");
    let mut out = Vec::new();
    for row in readme[start..end].lines().filter(|l| l.starts_with('|')) {
        let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
        let Some(state) = ChangeState::ALL.iter().find(|s| s.label() == cells[0]) else {
            continue;
        };
        out.push((*state, cells[1].parse().unwrap()));
    }
    assert_eq!(
        out.len(),
        ChangeState::ALL.len(),
        "the README lists every state"
    );
    out
}

/// What the README promises, checked through the API as `viewer`.
async fn check_board(http: &reqwest::Client, url: &str, viewer: &str) {
    let mut total = 0;
    for (state, promised) in readme_board() {
        let page = get(
            http,
            url,
            viewer,
            &format!("/api/v1/changes?state={}&limit=200", state.as_str()),
        )
        .await;
        let n = page["items"].as_array().unwrap().len();
        assert_eq!(n, promised, "changes {}", state.label());
        total += n;
    }
    assert_eq!(total, 41, "forty-one changes");

    let templates = get(http, url, viewer, "/api/v1/templates").await;
    let approved: Vec<&Value> = templates
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["state"] == "approved")
        .collect();
    assert_eq!(approved.len(), 1, "one approved standard-change template");

    let emergencies = get(
        http,
        url,
        viewer,
        "/api/v1/changes?type=emergency&limit=200",
    )
    .await;
    let mut awaiting_retrospective = 0;
    for c in emergencies["items"].as_array().unwrap() {
        let trail = get(
            http,
            url,
            viewer,
            &format!("/api/v1/changes/{}/approvals", c["key"].as_str().unwrap()),
        )
        .await;
        if trail["state"] == "approved"
            && !trail["retrospective_due_at"].is_null()
            && trail["retrospective_done_at"].is_null()
        {
            awaiting_retrospective += 1;
        }
    }
    assert_eq!(
        awaiting_retrospective, 1,
        "an emergency change awaits its retrospective"
    );
}

#[tokio::test]
async fn the_quick_start_serves_the_promised_board_to_every_printed_user() {
    let name = format!(
        "cab_quickstart_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let _cleanup = Databases(vec![name.clone()]);
    let http = reqwest::Client::new();

    // First run: a fresh database, chosen with --database.
    let demo = start_demo(&["--database", &name], &[]);
    wait_ready(&http, &demo.url).await;
    assert!(
        demo.banner
            .iter()
            .any(|l| l.contains(&format!("a new board in database {name}"))),
        "{:#?}",
        demo.banner
    );
    let expected_roles = [
        ("erin", "engineer"),
        ("eddie", "engineer"),
        ("sam", "security_reviewer"),
        ("carol", "cab_member"),
        ("carl", "cab_member"),
        ("rita", "release_manager"),
        ("audrey", "auditor"),
        ("adam", "admin"),
    ];
    assert_eq!(demo.users.len(), expected_roles.len(), "{:#?}", demo.banner);
    for (user, role) in expected_roles {
        let (printed_role, password) = &demo.users[user];
        assert_eq!(printed_role, role);
        let bearer = token(&http, &demo.url, user, password)
            .await
            .unwrap_or_else(|| panic!("{user} signs in with the printed password"));
        let me = get(&http, &demo.url, &bearer, "/api/v1/me").await;
        assert!(me.to_string().contains(role), "{user}: {me}");
        let dashboard = form_sign_in(&demo.url, user, password).await;
        assert!(dashboard.contains("Sign out"), "{user}'s dashboard");
    }
    let audrey = token(&http, &demo.url, "audrey", &demo.users["audrey"].1)
        .await
        .unwrap();
    check_board(&http, &demo.url, &audrey).await;
    let old_password = demo.users["erin"].1.clone();
    drop(demo);

    // Second run on the same database, named in DATABASE_URL this time: the
    // board is kept, and only the passwords are new.
    let demo = start_demo(&[], &[("DATABASE_URL", &url_for(&name))]);
    wait_ready(&http, &demo.url).await;
    assert!(
        demo.banner
            .iter()
            .any(|l| l.contains(&format!("the existing board in database {name}"))),
        "{:#?}",
        demo.banner
    );
    assert!(
        token(&http, &demo.url, "erin", &old_password)
            .await
            .is_none()
    );
    let erin = token(&http, &demo.url, "erin", &demo.users["erin"].1)
        .await
        .expect("the new password works");
    check_board(&http, &demo.url, &erin).await;
}

#[tokio::test]
async fn a_half_built_board_is_rebuilt_and_someone_elses_database_is_left_alone() {
    let half = format!(
        "cab_halfboard_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let foreign = format!(
        "cab_foreign_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let _cleanup = Databases(vec![half.clone(), foreign.clone()]);
    let http = reqwest::Client::new();

    // Stopped while seeding: the database it was asked for never appears
    // half-built, and the next run builds the whole board.
    let killed = format!(
        "cab_killed_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let _cleanup_killed = Databases(vec![killed.clone()]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_cab"))
        .args(["demo", "--listen", "127.0.0.1:0", "--database", &killed])
        .env_remove("DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if databases_starting_with(&format!("{killed}__building_"))
            .await
            .len()
            == 1
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !database_exists(&killed).await,
        "no half-built board in {killed}"
    );
    let demo = start_demo(&["--database", &killed], &[]);
    wait_ready(&http, &demo.url).await;
    let erin = token(&http, &demo.url, "erin", &demo.users["erin"].1)
        .await
        .unwrap();
    check_board(&http, &demo.url, &erin).await;
    drop(demo);

    // What an interrupted seeding used to leave: CAB's tables, the demo's
    // people, part of a board and no record that it was finished.
    let out = Command::new(env!("CARGO_BIN_EXE_cab"))
        .args(["user", "add", "erin", "--role", "engineer"])
        .env("DATABASE_URL", url_for(&half))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let demo = start_demo(&["--database", &half], &[]);
    wait_ready(&http, &demo.url).await;
    assert!(
        demo.banner.iter().any(|l| l.contains("a new board")),
        "{:#?}",
        demo.banner
    );
    let erin = token(&http, &demo.url, "erin", &demo.users["erin"].1)
        .await
        .unwrap();
    check_board(&http, &demo.url, &erin).await;
    drop(demo);

    // A database holding anything else is refused, and keeps what it held.
    admin_sql(&format!("CREATE DATABASE \"{foreign}\"")).await;
    let mut conn = PgConnection::connect(&url_for(&foreign)).await.unwrap();
    sqlx::raw_sql("CREATE TABLE invoices (id int); INSERT INTO invoices VALUES (1)")
        .execute(&mut conn)
        .await
        .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cab"))
        .args(["demo", "--listen", "127.0.0.1:0", "--database", &foreign])
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "database {foreign} holds data that is not a CAB demo board"
        )),
        "{stderr}"
    );
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM invoices")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(kept, 1);
    conn.close().await.unwrap();
    assert!(database_exists(&foreign).await);
}

#[tokio::test]
async fn two_demos_started_at_once_on_one_database_share_one_board() {
    let name = format!(
        "cab_twice_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let _cleanup = Databases(vec![name.clone()]);
    let http = reqwest::Client::new();
    let first = std::thread::spawn({
        let name = name.clone();
        move || start_demo(&["--database", &name], &[])
    });
    let second = std::thread::spawn({
        let name = name.clone();
        move || start_demo(&["--database", &name], &[])
    });
    let demos = [first.join().unwrap(), second.join().unwrap()];
    let built: Vec<bool> = demos
        .iter()
        .map(|d| d.banner.iter().any(|l| l.contains("a new board")))
        .collect();
    assert_eq!(
        built.iter().filter(|b| **b).count(),
        1,
        "one of them builds the board"
    );
    // The one that waited printed the passwords that are in force.
    let later = &demos[built.iter().position(|b| !b).unwrap()];
    wait_ready(&http, &later.url).await;
    let erin = token(&http, &later.url, "erin", &later.users["erin"].1)
        .await
        .expect("the later run's password works");
    check_board(&http, &later.url, &erin).await;
}
