//! The log under a flood: one line per refused sign-in at most, and past a
//! burst only a count, against the `cab` binary at its default log level.

use std::process::Stdio;

use sqlx::PgPool;

use crate::cli::{add_user, spawn_server_with};

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_flood_of_refused_sign_ins_writes_a_burst_and_a_count(pool: PgPool) {
    add_user(&pool, "erin", &["engineer"], "erin-long-password");
    let log_path = std::env::temp_dir().join(format!("cab-log-{}.txt", uuid::Uuid::new_v4()));
    let log_file = std::fs::File::create(&log_path).unwrap();
    // The server's default log level, as a user starts it.
    let (mut server, url) = spawn_server_with(
        &pool,
        "LOCAL",
        Stdio::from(log_file),
        &[("RUST_LOG", "info,sqlx=warn"), ("NO_COLOR", "1")],
    );
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
