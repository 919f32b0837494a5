//! The log under a flood: one line per refused sign-in at most, and past a
//! burst only a count, against the `cab` binary at its default log level.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use sqlx::PgPool;

use crate::audit::database_url;
use crate::cli::{GOOD_KEY, ServerProcess, add_user};

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_flood_of_refused_sign_ins_writes_a_burst_and_a_count(pool: PgPool) {
    add_user(&pool, "erin", &["engineer"], "erin-long-password");
    let log_path = std::env::temp_dir().join(format!("cab-log-{}.txt", uuid::Uuid::new_v4()));
    let log_file = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cab"))
        .arg("serve")
        .env("DATABASE_URL", database_url(&pool))
        .env("CAB_LISTEN", "127.0.0.1:0")
        .env("CAB_SECRET_KEY", GOOD_KEY)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(log_file)
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("CAB listening on ")
        .unwrap()
        .to_owned();
    let mut server = ServerProcess(child);
    let started = std::fs::read_to_string(&log_path).unwrap().lines().count();

    let client = reqwest::Client::new();
    let refused = 40;
    for i in 0..refused {
        let resp = client
            .post(format!("{url}/api/v1/auth/token"))
            .json(&serde_json::json!({"username": format!("nobody{i}"), "password": "a guess"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
    }
    assert!(server.terminate().success());
    let log = std::fs::read_to_string(&log_path).unwrap();
    std::fs::remove_file(&log_path).ok();
    let lines: Vec<&str> = log.lines().skip(started).collect();

    let request_lines = lines
        .iter()
        .filter(|l| l.contains("answered") && l.contains("status=401") && !l.contains("held_back"))
        .count();
    assert_eq!(request_lines, 10, "a burst of ten request lines:\n{log}");
    let summary: Vec<&&str> = lines.iter().filter(|l| l.contains("held_back")).collect();
    assert_eq!(summary.len(), 1, "{log}");
    assert!(
        summary[0].contains("… and 30 more like it in the last")
            && summary[0].contains("status=401"),
        "{log}"
    );
    // Nothing else was written for the refusals: a few lines of shutting down.
    assert!(
        lines.len() <= request_lines + summary.len() + 4,
        "{} lines for {refused} refused sign-ins:\n{log}",
        lines.len()
    );
}
