//! The README's quick start, run as a newcomer runs it: the `cab` binary's
//! `demo` command on a fresh database, then every printed user signs in and
//! the board is checked against what the README promises.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use cab_domain::change::ChangeState;
use chrono::{DateTime, Utc};
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

/// The demo's audit trail is big enough for the auditor's filters, pages
/// and exports to show something real.
async fn check_trail(http: &reqwest::Client, url: &str, auditor: &str) {
    let page = get(http, url, auditor, "/api/v1/audit/events?limit=500").await;
    assert_eq!(page["events"].as_array().unwrap().len(), 500);
    assert!(page["older"].is_string(), "more than one page");
    let refused = get(http, url, auditor, "/api/v1/audit/events?outcome=refused").await;
    assert!(
        refused["events"].as_array().unwrap().len() >= 3,
        "refusals to find: {refused}"
    );
    let votes = get(
        http,
        url,
        auditor,
        "/api/v1/audit/events?action=change.voted",
    )
    .await;
    assert!(!votes["events"].as_array().unwrap().is_empty());
    let approvals = http
        .get(format!("{url}/api/v1/audit/approvals/export"))
        .bearer_auth(auditor)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(approvals.lines().count() > 50, "{approvals}");
    assert!(approvals.contains("Vote: Approve"));
    assert!(
        approvals.contains(",Refused,"),
        "a refused decision in the approval trail"
    );
    // Every export ends at a signed checkpoint, published.
    let checkpoints = http
        .get(format!("{url}/api/v1/audit/checkpoints"))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert!(!checkpoints.as_array().unwrap().is_empty());
}

/// The demo's chain verifies (`cab audit verify`, as its README says), and
/// its times never go backwards: the history's events, recorded weeks ago,
/// come before everything recorded today.
async fn check_chain(database: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_cab"))
        .args(["audit", "verify"])
        .env("DATABASE_URL", url_for(database))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("audit chain intact"),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut conn = PgConnection::connect(&url_for(database)).await.unwrap();
    let backwards: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_events a JOIN audit_events b ON b.seq = a.seq + 1
          WHERE b.occurred_at < a.occurred_at",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(backwards, 0, "events whose time goes back");
    let weeks_ago: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_events WHERE occurred_at < now() - interval '12 weeks'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(
        weeks_ago > 0,
        "the trail reaches back to the history's first weeks"
    );
    conn.close().await.unwrap();
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

/// Every change the API lists for `query`, page after page.
async fn list_changes(
    http: &reqwest::Client,
    url: &str,
    bearer: &str,
    query: &[(&str, &str)],
) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut params: Vec<(&str, &str)> = query.to_vec();
        params.push(("limit", "200"));
        if let Some(c) = &cursor {
            params.push(("cursor", c));
        }
        let r = http
            .get(format!("{url}/api/v1/changes"))
            .query(&params)
            .bearer_auth(bearer)
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "GET changes {query:?}: {}",
            r.status()
        );
        let page: Value = r.json().await.unwrap();
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return items,
        }
    }
}

/// The board's history: the changes of the weeks before this one, written
/// as records of the past, are the ones last touched before the board was
/// built (everything else on the board was made a moment ago).
fn is_history(summary: &Value) -> bool {
    let updated: DateTime<Utc> = summary["updated_at"].as_str().unwrap().parse().unwrap();
    updated < Utc::now() - chrono::Duration::hours(1)
}

/// The history's changes: how many ended each way (closed with each code,
/// or deployed and not closed yet).
const HISTORY_ENDINGS: [(&str, usize); 5] = [
    ("failed_not_rolled_back", 12),
    ("failed_rolled_back", 10),
    ("implemented", 8),
    ("successful", 93),
    ("successful_with_issues", 3),
];

/// What the README promises, and how the board's changes ended, checked
/// through the API as `viewer`.
async fn check_board(http: &reqwest::Client, url: &str, viewer: &str) {
    let templates = get(http, url, viewer, "/api/v1/templates").await;
    let approved: Vec<&Value> = templates
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["state"] == "approved")
        .collect();
    assert_eq!(approved.len(), 1, "one approved standard-change template");

    // Every change's ending: its closure, its review and the review's
    // action items; the board's own changes apart from its history.
    let all = list_changes(http, url, viewer, &[]).await;
    let history: Vec<String> = all
        .iter()
        .filter(|c| is_history(c))
        .map(|c| c["key"].as_str().unwrap().to_owned())
        .collect();
    let mut endings = BTreeMap::new();
    let mut past = BTreeMap::new();
    for c in &all {
        let key = c["key"].as_str().unwrap().to_owned();
        let ending = get(http, url, viewer, &format!("/api/v1/changes/{key}/review")).await;
        if history.contains(&key) {
            past.insert(key, ending);
        } else {
            endings.insert(key, ending);
        }
    }
    assert_eq!(endings.len(), 44, "forty-four changes on the board");
    let code = |key: &str| endings[key]["closure"]["code"].as_str().unwrap_or("");

    let emergencies = list_changes(http, url, viewer, &[("type", "emergency")]).await;
    let mut awaiting_retrospective = Vec::new();
    let mut retrospective_done = Vec::new();
    let mut past_emergencies = Vec::new();
    for c in &emergencies {
        let key = c["key"].as_str().unwrap();
        let trail = get(
            http,
            url,
            viewer,
            &format!("/api/v1/changes/{key}/approvals"),
        )
        .await;
        if history.iter().any(|h| h == key) {
            past_emergencies.push((key.to_owned(), trail));
            continue;
        }
        if trail["state"] == "approved"
            && !trail["retrospective_due_at"].is_null()
            && trail["retrospective_done_at"].is_null()
        {
            awaiting_retrospective.push((key.to_owned(), trail["retrospective_due_at"].clone()));
        }
        if !trail["retrospective_done_at"].is_null() {
            retrospective_done.push(key.to_owned());
        }
    }
    // Both of the board's emergencies await their retrospective, which is
    // their review: owed because they are emergencies, due when the
    // retrospective is. One is not written yet; the other is written ahead
    // of its deployment and is signed off once that has run.
    assert_eq!(
        awaiting_retrospective.len(),
        2,
        "the board's emergency changes await their retrospective"
    );
    let at = |v: &Value| v.as_str().unwrap().parse::<DateTime<Utc>>().unwrap();
    let mut revisions = Vec::new();
    for (key, due) in &awaiting_retrospective {
        let review = &endings[key]["review"];
        assert_eq!(review["required"], true, "{key}: {review}");
        assert_eq!(review["reasons"][0]["code"], "emergency", "{key}: {review}");
        assert_eq!(review["state"], "open", "{key}: {review}");
        assert_eq!(
            at(&review["due_at"]),
            at(due),
            "{key}'s review is due with its retrospective"
        );
        revisions.push(review["revision"].as_i64().unwrap());
    }
    revisions.sort();
    assert_eq!(revisions, [0, 1]);
    assert!(retrospective_done.is_empty(), "{retrospective_done:?}");
    // The history's two emergencies are closed, their retrospectives done.
    assert_eq!(past_emergencies.len(), 2, "{past_emergencies:?}");
    for (key, trail) in &past_emergencies {
        assert_eq!(trail["state"], "closed", "{key}: {trail}");
        assert!(!trail["retrospective_done_at"].is_null(), "{key}: {trail}");
        assert_eq!(past[key]["review"]["state"], "signed_off", "{key}");
    }

    // A closed change of every close code; CAB closed the one whose window
    // passed unimplemented, people closed the others.
    let mut closed: Vec<(&str, bool)> = endings
        .values()
        .filter(|e| e["change"]["state"] == "closed")
        .map(|e| {
            (
                e["closure"]["code"].as_str().unwrap(),
                !e["closure"]["closed_by"].is_null(),
            )
        })
        .collect();
    closed.sort_unstable();
    assert_eq!(
        closed,
        [
            ("failed_not_rolled_back", true),
            ("failed_rolled_back", true),
            ("not_implemented", false),
            ("successful", true),
            ("successful_with_issues", true),
        ],
        "one closed change of each close code"
    );

    // Reviews: signed off, owed and not yet due (one of them being
    // written), overdue, and amended after sign-off.
    let reviews: Vec<(&str, &Value)> = endings
        .iter()
        .filter(|(_, e)| !e["review"].is_null())
        .map(|(k, e)| (k.as_str(), &e["review"]))
        .collect();
    let awaited =
        |r: &&(&str, &Value)| r.1["required"] == true && r.1["first_signed_off_at"].is_null();
    let signed_off: Vec<&str> = reviews
        .iter()
        .filter(|r| r.1["state"] == "signed_off")
        .map(|r| r.0)
        .collect();
    let overdue: Vec<&str> = reviews
        .iter()
        .filter(awaited)
        .filter(|r| r.1["overdue"] == true)
        .map(|r| code(r.0))
        .collect();
    let pending: Vec<&(&str, &Value)> = reviews
        .iter()
        .filter(awaited)
        .filter(|r| r.1["overdue"] == false)
        .collect();
    let being_written = pending.iter().filter(|r| r.1["revision"] != 0).count();
    let amended: Vec<(&str, &Value)> = reviews
        .iter()
        .filter(|r| r.1["state"] == "open" && !r.1["first_signed_off_at"].is_null())
        .map(|r| (code(r.0), &r.1["revision"]))
        .collect();
    assert_eq!(signed_off.len(), 1, "one review signed off: {signed_off:?}");
    assert_eq!(overdue, ["failed_not_rolled_back"], "one review overdue");
    assert_eq!(pending.len(), 4, "four reviews owed and not yet due");
    assert_eq!(
        being_written, 2,
        "two of them being written (one ahead of its deployment)"
    );
    assert_eq!(
        amended,
        [("failed_rolled_back", &json!(2))],
        "one review amended after sign-off, awaiting sign-off again"
    );
    // The signed-off review of the change that succeeded with issues says
    // everything a review says.
    let (_, review) = reviews
        .iter()
        .find(|r| code(r.0) == "successful_with_issues")
        .expect("the change that succeeded with issues has a review");
    assert_eq!(review["state"], "signed_off", "{review}");
    assert_eq!(review["signed_off_by"], "carol", "{review}");
    let content = &review["content"];
    for field in ["outcome", "went_well", "went_wrong", "lessons"] {
        assert!(
            content[field].as_str().is_some_and(|t| !t.is_empty()),
            "{field}: {content}"
        );
    }
    assert_eq!(content["intervention"], "forward_fix", "{content}");
    let incident = &content["incidents"][0];
    assert_eq!(incident["severity"], "sev3", "{content}");
    assert_eq!(incident["caused"], "confirmed", "{content}");
    assert!(
        at(&incident["started_at"]) < at(&incident["restored_at"]),
        "{content}"
    );

    // Action items in every status, one of them overdue, owned by seven
    // different people.
    let actions: Vec<&Value> = endings
        .values()
        .chain(past.values())
        .flat_map(|e| e["actions"].as_array().unwrap())
        .collect();
    let with = |s: &str| actions.iter().filter(|a| a["status"] == s).count();
    assert_eq!(
        (with("open"), with("in_progress"), with("done")),
        (3, 3, 2),
        "action items open, in progress and done: {actions:?}"
    );
    let late: Vec<&Value> = actions
        .iter()
        .filter(|a| a["overdue"] == true)
        .map(|a| &a["owner"])
        .collect();
    assert_eq!(late, [&json!("rita")], "one action item overdue");
    let mut owners: Vec<&str> = actions
        .iter()
        .map(|a| a["owner"].as_str().unwrap())
        .collect();
    owners.sort_unstable();
    owners.dedup();
    assert_eq!(owners.len(), 7, "{owners:?}");

    // The history: every change deployed, closed by its author with the
    // code its PROD deployment earned or not closed yet, and every review
    // it owed signed off by a CAB member, none outstanding.
    let mut ended: BTreeMap<&str, usize> = BTreeMap::new();
    for (key, e) in &past {
        let state = e["change"]["state"].as_str().unwrap();
        let how = match state {
            "closed" => e["closure"]["code"].as_str().unwrap(),
            _ => state,
        };
        *ended.entry(how).or_default() += 1;
        if state == "closed" {
            assert!(
                e["closure"]["closed_by"]
                    .as_str()
                    .is_some_and(|by| ["erin", "eddie"].contains(&by)),
                "{key}: {e}"
            );
        }
        let review = &e["review"];
        if how.starts_with("failed") || how == "successful_with_issues" {
            assert!(!review.is_null(), "{key} owed a review: {e}");
        }
        if !review.is_null() {
            assert_eq!(review["required"], true, "{key}: {review}");
            assert_eq!(review["state"], "signed_off", "{key}: {review}");
            assert_eq!(review["overdue"], false, "{key}: {review}");
            assert!(
                review["signed_off_by"]
                    .as_str()
                    .is_some_and(|by| ["carol", "carl"].contains(&by)),
                "{key}: {review}"
            );
            let intervention = review["content"]["intervention"].as_str().unwrap();
            match how {
                "failed_rolled_back" => assert_eq!(intervention, "rollback", "{key}"),
                "failed_not_rolled_back" => assert_eq!(intervention, "forward_fix", "{key}"),
                _ => {}
            }
        }
    }
    assert_eq!(
        ended.into_iter().collect::<Vec<_>>(),
        HISTORY_ENDINGS,
        "how the history's changes ended"
    );

    let mut total = 0;
    for (state, promised) in readme_board() {
        let n = list_changes(http, url, viewer, &[("state", state.as_str())])
            .await
            .len();
        assert_eq!(n, promised, "changes {}", state.label());
        total += n;
    }
    let history_total: usize = HISTORY_ENDINGS.iter().map(|(_, n)| n).sum();
    assert_eq!(history.len(), history_total, "the history's changes");
    assert_eq!(total, 44 + history_total, "the board and its history");

    check_measures(http, url, viewer).await;
}

/// The measures over the default period (the last 90 days, by week) show
/// the history's trends.
async fn check_measures(http: &reqwest::Client, url: &str, viewer: &str) {
    let report = get(http, url, viewer, "/api/v1/metrics").await;
    assert_eq!(report["bucket"], "week", "{report}");
    let buckets = report["buckets"].as_array().unwrap();
    let deployed = buckets
        .iter()
        .filter(|b| b["deployment_frequency"]["deployments"].as_i64().unwrap() > 0)
        .count();
    assert!(
        deployed >= 12,
        "{deployed} weeks with successful deployments"
    );

    // Fewer deployments fail now than three months ago.
    let ended: Vec<(i64, i64)> = buckets
        .iter()
        .map(|b| &b["change_failure_rate"])
        .map(|r| {
            (
                r["failed"].as_i64().unwrap(),
                r["deployments"].as_i64().unwrap(),
            )
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    assert!(ended.len() >= 8, "{ended:?}");
    let rate = |weeks: &[(i64, i64)]| {
        let (failed, all) = weeks
            .iter()
            .fold((0, 0), |(f, n), (wf, wn)| (f + wf, n + wn));
        failed as f64 / all as f64
    };
    let (first, last) = (rate(&ended[..4]), rate(&ended[ended.len() - 4..]));
    assert!(
        first > last,
        "failure rate of the first four weeks {first:.3}, of the last four {last:.3}: {ended:?}"
    );

    // Every rate is a share.
    for figures in buckets.iter().chain([&report["total"]]) {
        for rate in [
            &figures["change_failure_rate"]["rate"],
            &figures["emergency"]["emergency_share"],
            &figures["emergency"]["break_glass_share"],
        ] {
            if let Some(r) = rate.as_f64() {
                assert!((0.0..=1.0).contains(&r), "{rate} in {figures}");
            }
        }
    }

    let total = &report["total"];
    assert!(
        total["lead_time"]["p50_hours"]
            .as_f64()
            .is_some_and(|h| h > 0.0),
        "{total}"
    );
    assert!(
        total["emergency"]["emergency"].as_i64().unwrap() >= 2,
        "{total}"
    );
    // Riskier changes take longer to approve.
    let approval = |risk: &str| {
        total["approval_lead_time"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["risk"] == risk)
            .and_then(|a| a["p50_hours"].as_f64())
            .unwrap_or_else(|| panic!("{risk}: {total}"))
    };
    assert!(
        approval("low") < approval("medium") && approval("medium") < approval("high"),
        "{total}"
    );
    // Not every pipeline reported the commits it deployed.
    let quality = &report["data_quality"];
    assert!(
        quality["deployments_without_commits"].as_i64().unwrap() > 0,
        "{quality}"
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
    check_trail(&http, &demo.url, &audrey).await;
    check_chain(&name).await;
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
