//! The audit trail for auditors: filters and keyset paging over the API and
//! the page, and the exports of the events and the approval trail, streamed,
//! neutralised against formula injection, vouched for by their trailer,
//! recorded, and stopped when the client goes away.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use cab_domain::Role;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::changes::complete_change;
use crate::common::{ApiClient, TestApp};

/// A small board's history: a change by erin, an independent vote by carol,
/// erin's refused vote on her own change, and a change whose title is a
/// formula.
struct Board {
    auditor: ApiClient,
    erin: ApiClient,
    change: String,
    number: i64,
}

async fn board(app: &TestApp) -> Board {
    let erin = app
        .api_login("erin", &[Role::Engineer, Role::CabMember])
        .await;
    let carol = app.api_login("carol", &[Role::CabMember]).await;
    let auditor = app.api_login("audrey", &[Role::Auditor]).await;
    let change = app.submitted_change(&erin, 1, 1, "normal").await;
    let resp = app.vote(&carol, &change, "approve", "Looks safe.").await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let refused = app.vote(&erin, &change, "approve", "Mine, but fine.").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    let number = app
        .api(
            Method::GET,
            &format!("/api/v1/changes/{change}"),
            Some(&erin.token),
            None,
        )
        .await
        .json()["number"]
        .as_i64()
        .unwrap();
    let formula = complete_change("=HYPERLINK(\"https://evil.example\",\"open\")");
    app.file_change(&erin, formula).await;
    Board {
        auditor,
        erin,
        change,
        number,
    }
}

async fn events(app: &TestApp, who: &ApiClient, query: &str) -> Value {
    let resp = app
        .api(
            Method::GET,
            &format!("/api/v1/audit/events{query}"),
            Some(&who.token),
            None,
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{query}: {}", resp.body);
    resp.json()
}

fn list(page: &Value) -> Vec<Value> {
    page["events"].as_array().cloned().unwrap_or_default()
}

#[sqlx::test(migrations = "../../migrations")]
async fn filters_select_what_they_name(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let b = board(&app).await;
    let all = list(&events(&app, &b.auditor, "?limit=500").await);
    assert_eq!(all.len() as i64, app.audit_count().await);
    let seqs: Vec<i64> = all.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] > w[1]),
        "newest first: {seqs:?}"
    );

    let refused = list(&events(&app, &b.auditor, "?outcome=refused").await);
    assert!(!refused.is_empty());
    assert!(
        refused
            .iter()
            .all(|e| e["action"] == "access.denied" && e["refused"] == true)
    );
    let vote_refusal = refused
        .iter()
        .find(|e| e["payload"]["attempted"] == "change.vote")
        .expect("erin's own vote refused");
    assert_eq!(vote_refusal["actor"]["username"], "erin");
    assert!(
        vote_refusal["summary"]
            .as_str()
            .unwrap()
            .contains("vote on"),
        "{vote_refusal}"
    );
    let done = list(&events(&app, &b.auditor, "?outcome=done&limit=500").await);
    assert_eq!(done.len() + refused.len(), all.len());
    assert!(done.iter().all(|e| e["refused"] == false));

    let by_erin = list(&events(&app, &b.auditor, "?actor=erin&limit=500").await);
    assert!(!by_erin.is_empty());
    assert!(by_erin.iter().all(|e| e["actor"]["username"] == "erin"));

    let votes = list(&events(&app, &b.auditor, "?action=change.voted").await);
    assert_eq!(votes.len(), 1);
    assert_eq!(votes[0]["actor"]["username"], "carol");
    assert_eq!(votes[0]["action_label"], "CAB vote");
    assert_eq!(votes[0]["actor"]["roles_label"], "CAB member");

    let of_change = list(
        &events(
            &app,
            &b.auditor,
            &format!("?change=CHG-{}&limit=500", b.number),
        )
        .await,
    );
    assert!(of_change.len() >= 4, "{of_change:?}");
    assert!(
        of_change
            .iter()
            .all(|e| e["entity_type"] == "change" && e["entity_id"] == b.change.as_str())
    );
    let about = list(
        &events(
            &app,
            &b.auditor,
            &format!("?entity_type=change&entity_id={}&limit=500", b.change),
        )
        .await,
    );
    assert_eq!(about.len(), of_change.len());

    let today = chrono::Utc::now().date_naive();
    let dated = list(
        &events(
            &app,
            &b.auditor,
            &format!("?from={today}&to={today}&limit=500"),
        )
        .await,
    );
    assert_eq!(dated.len(), all.len());
    let before = today.pred_opt().unwrap();
    assert!(list(&events(&app, &b.auditor, &format!("?to={before}")).await).is_empty());
}

#[sqlx::test(migrations = "../../migrations")]
async fn bad_filters_are_named_and_strangers_are_refused_first(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let b = board(&app).await;
    for (query, field) in [
        ("?from=2026-13-01", "from"),
        ("?from=2026-11-02&to=2026-11-01", "to"),
        ("?action=change.exploded", "action"),
        ("?outcome=maybe", "outcome"),
        ("?change=CHG-99999", "change"),
        ("?change=banana", "change"),
        ("?before=0", "before"),
        ("?before=5&after=3", "after"),
        ("?entity_id=42", "entity_type"),
        ("?limit=501", "limit"),
    ] {
        let resp = app
            .api(
                Method::GET,
                &format!("/api/v1/audit/events{query}"),
                Some(&b.auditor.token),
                None,
            )
            .await;
        assert_eq!(
            resp.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{query}: {}",
            resp.body
        );
        let problem = resp.json();
        let named = problem["field"]
            .as_str()
            .map(str::to_owned)
            .or_else(|| problem["errors"][0]["field"].as_str().map(str::to_owned));
        assert_eq!(named.as_deref(), Some(field), "{query}: {problem}");
    }

    // An engineer is refused before the filter is even read, and the
    // refusal is recorded; nothing else is.
    let before = app.audit_count().await;
    for uri in [
        "/api/v1/audit/events?from=nonsense",
        "/api/v1/audit/events",
        "/api/v1/audit/events/export?format=ndjson",
        "/api/v1/audit/approvals/export",
    ] {
        let resp = app.api(Method::GET, uri, Some(&b.erin.token), None).await;
        assert_eq!(resp.status, StatusCode::FORBIDDEN, "{uri}: {}", resp.body);
        assert_eq!(resp.problem_code(), "auditor_required");
    }
    assert_eq!(app.audit_count().await, before + 4);
    let denials = app.denials().await;
    assert_eq!(
        denials[denials.len() - 4..]
            .iter()
            .map(|(a, r)| (a.as_str(), r.as_str()))
            .collect::<Vec<_>>(),
        vec![("audit.read", "auditor_required"); 4]
    );
    let unsigned = app
        .api(Method::GET, "/api/v1/audit/events", None, None)
        .await;
    assert_eq!(unsigned.status, StatusCode::UNAUTHORIZED);
}

#[sqlx::test(migrations = "../../migrations")]
async fn keyset_pages_cover_every_event_once_both_ways(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let b = board(&app).await;
    let total = app.audit_count().await;
    let mut seen = Vec::new();
    let mut pages = Vec::new();
    let mut next = Some("/api/v1/audit/events?limit=4".to_owned());
    while let Some(uri) = next {
        let page = events(
            &app,
            &b.auditor,
            uri.trim_start_matches("/api/v1/audit/events"),
        )
        .await;
        let got = list(&page);
        assert!(got.len() <= 4);
        seen.extend(got.iter().map(|e| e["seq"].as_i64().unwrap()));
        next = page["older"].as_str().map(str::to_owned);
        pages.push(page);
        assert!(pages.len() < 100, "paging does not end");
    }
    // Reading began with the newest; it has no newer page.
    assert!(pages[0]["newer"].is_null());
    let mut expected: Vec<i64> = (1..=total).collect();
    expected.reverse();
    // Reading the pages records nothing, so the count is still the total.
    assert_eq!(seen, expected);
    // The second page's way back leads to exactly the first page.
    let back = pages[1]["newer"].as_str().unwrap();
    let again = events(
        &app,
        &b.auditor,
        back.trim_start_matches("/api/v1/audit/events"),
    )
    .await;
    assert_eq!(list(&again), list(&pages[0]));
    // A filtered page keeps its filter in its links.
    let refused = events(&app, &b.auditor, "?outcome=refused&limit=1").await;
    if let Some(older) = refused["older"].as_str() {
        assert!(older.contains("outcome=refused"), "{older}");
    }
}

/// An export as the client reads it, whole.
async fn export(app: &TestApp, who: &ApiClient, uri: &str) -> (String, String, String) {
    let resp = app.api(Method::GET, uri, Some(&who.token), None).await;
    assert_eq!(resp.status, StatusCode::OK, "{uri}: {}", resp.body);
    (
        resp.header("content-type").unwrap_or_default().to_owned(),
        resp.header("content-disposition")
            .unwrap_or_default()
            .to_owned(),
        resp.body,
    )
}

#[sqlx::test(migrations = "../../migrations")]
async fn the_ndjson_export_is_vouched_for_by_its_trailer_and_each_hash(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let b = board(&app).await;
    let head_before: i64 = app.audit_count().await;
    let (content_type, disposition, body) = export(
        &app,
        &b.auditor,
        "/api/v1/audit/events/export?format=ndjson",
    )
    .await;
    assert_eq!(content_type, "application/x-ndjson");
    assert!(disposition.starts_with("attachment; filename=\"cab-audit-events-"));
    assert!(disposition.ends_with(".ndjson\""), "{disposition}");
    let lines: Vec<&str> = body.split_inclusive('\n').collect();
    let header: Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(header["export"]["trail"], "events");
    let trailer: Value = serde_json::from_str(lines[lines.len() - 1]).unwrap();
    let rows = &lines[1..lines.len() - 1];
    assert_eq!(
        trailer["trailer"]["rows"].as_u64().unwrap() as usize,
        rows.len()
    );
    // The events, and the record of the checkpoint key made for this
    // first export.
    assert_eq!(rows.len() as i64, head_before + 1);
    let preceding: String = lines[..lines.len() - 1].concat();
    assert_eq!(
        trailer["trailer"]["sha256"],
        hex::encode(Sha256::digest(preceding.as_bytes()))
    );
    let mut prev = vec![0u8; 32];
    for (i, line) in rows.iter().enumerate() {
        let e: Value = serde_json::from_str(line).unwrap();
        assert_eq!(e["seq"].as_i64(), Some(i as i64 + 1));
        assert_eq!(e["prev_hash"], hex::encode(&prev));
        use base64::Engine;
        let canonical = base64::engine::general_purpose::STANDARD
            .decode(e["canonical"].as_str().unwrap())
            .unwrap();
        let mut h = Sha256::new();
        h.update(&prev);
        h.update(&canonical);
        let hash = h.finalize().to_vec();
        assert_eq!(e["hash"], hex::encode(&hash), "event {}", i + 1);
        prev = hash;
    }
    assert_eq!(trailer["trailer"]["checkpoint"]["seq"], head_before + 1);
    assert_eq!(trailer["trailer"]["checkpoint"]["hash"], hex::encode(&prev));
    // The export itself is recorded, after the events it holds.
    let (action, payload) = app.audit_events().await.pop().unwrap();
    assert_eq!(action, "audit.exported");
    assert_eq!(payload["trail"], "events");
    assert_eq!(payload["format"], "ndjson");
}

#[sqlx::test(migrations = "../../migrations")]
async fn csv_exports_neutralise_formulas_and_carry_the_approval_trail(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let b = board(&app).await;
    let (content_type, _, events_csv) =
        export(&app, &b.auditor, "/api/v1/audit/events/export?format=csv").await;
    assert_eq!(content_type, "text/csv; charset=utf-8");
    assert!(events_csv.starts_with("Event number,When (UTC),Account,Name,Roles then,"));
    // The formula title is in a payload cell; the cell starts with `{`, but a
    // title cell elsewhere never starts with `=`.
    for line in events_csv.lines() {
        for cell in line.split(',') {
            assert!(
                !cell.starts_with('=') && !cell.starts_with('+') && !cell.starts_with('@'),
                "{line}"
            );
        }
    }

    let (_, _, approvals) = export(
        &app,
        &b.auditor,
        &format!("/api/v1/audit/approvals/export?change=CHG-{}", b.number),
    )
    .await;
    let mut lines = approvals.lines();
    assert_eq!(
        lines.next(),
        Some(
            "Event number,When (UTC),Change,Title,Revision,Risk,Decision-maker,Name,Roles then,Decision,Quorum needed,Separation of duties,Reason,Hash"
        )
    );
    let rows: Vec<&str> = lines.collect();
    let vote = rows
        .iter()
        .find(|r| r.contains("Vote: Approve"))
        .expect("carol's vote");
    assert!(vote.contains(&format!(",CHG-{},", b.number)), "{vote}");
    assert!(vote.contains(",carol,"), "{vote}");
    assert!(vote.contains(",CAB member,"), "{vote}");
    assert!(vote.contains(",Passed,"), "{vote}");
    assert!(vote.contains("CAB approval"), "{vote}");
    let refused = rows
        .iter()
        .find(|r| r.contains("Refused: tried to vote on it"))
        .expect("erin's refused vote");
    assert!(refused.contains(",erin,"), "{refused}");
    assert!(refused.contains(",Refused,"), "{refused}");

    // The formula-titled change's filing is not a decision; its title shows
    // neutralised in the events CSV once it is a cell of its own: the
    // approval trail of a refusal on it would carry it. Check the rule on
    // the title through the events filter of that change.
    let formula_number: i64 =
        sqlx::query_scalar("SELECT number FROM changes WHERE title LIKE '=%'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    let carol2 = app.api_login("cora", &[Role::CabMember]).await;
    let formula_id: String = sqlx::query_scalar("SELECT id::text FROM changes WHERE number = $1")
        .bind(formula_number)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let draft_vote = app.vote(&carol2, &formula_id, "approve", "").await;
    assert!(draft_vote.status.is_client_error(), "{}", draft_vote.body);
    let (_, _, trail) = export(
        &app,
        &b.auditor,
        &format!("/api/v1/audit/approvals/export?change=CHG-{formula_number}"),
    )
    .await;
    let row = trail.lines().nth(1).expect("the refused vote on the draft");
    assert!(
        row.contains(",\"'=HYPERLINK(\"\"https://evil.example\"\",\"\"open\"\")\","),
        "{row}"
    );

    // NDJSON of the approval trail: rows and trailer agree.
    let (_, _, nd) = export(
        &app,
        &b.auditor,
        &format!(
            "/api/v1/audit/approvals/export?format=ndjson&change=CHG-{}",
            b.number
        ),
    )
    .await;
    let lines: Vec<&str> = nd.lines().collect();
    let trailer: Value = serde_json::from_str(lines[lines.len() - 1]).unwrap();
    assert_eq!(
        trailer["trailer"]["rows"].as_u64().unwrap() as usize,
        lines.len() - 2
    );
    let vote: Value = lines[1..lines.len() - 1]
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v["action"] == "change.voted")
        .unwrap();
    assert_eq!(vote["decision"], "approve");
    assert_eq!(vote["decision_maker"], "carol");
    assert_eq!(vote["roles"], json!(["cab_member"]));
    assert_eq!(vote["separation_of_duties"], "passed");
    assert_eq!(vote["risk_level"], "low");
    assert_eq!(vote["revision"], 1);

    let bad = app
        .api(
            Method::GET,
            "/api/v1/audit/events/export?format=xlsx",
            Some(&b.auditor.token),
            None,
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.json()["field"], "format");
}

/// Appends `n` filler events (and moves the head over them) as a bulk
/// import would, hashes aside: the export reads rows, it does not verify.
async fn filler(pool: &PgPool, n: i64) {
    let mut tx = pool.begin().await.unwrap();
    for sql in [
        "ALTER TABLE audit_events DISABLE TRIGGER USER",
        "ALTER TABLE audit_head DISABLE TRIGGER USER",
    ] {
        sqlx::query(sql).execute(&mut *tx).await.unwrap();
    }
    sqlx::query(
        "INSERT INTO audit_events (seq, occurred_at, actor_roles, action, entity_type, payload,
                                   prev_hash, hash, canonical)
         SELECT h.seq + g, now(), '{}', 'auth.login_failed', 'user',
                jsonb_build_object('username', 'x' || g, 'padding', repeat('p', 400)),
                '\\x00', '\\x00', '\\x00'
         FROM audit_head h, generate_series(1, $1) g",
    )
    .bind(n)
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query("UPDATE audit_head SET seq = seq + $1")
        .bind(n)
        .execute(&mut *tx)
        .await
        .unwrap();
    for sql in [
        "ALTER TABLE audit_events ENABLE TRIGGER USER",
        "ALTER TABLE audit_head ENABLE TRIGGER USER",
    ] {
        sqlx::query(sql).execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();
}

/// Sessions still reading for an export.
async fn exports_reading(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()
           AND query LIKE '%audit_events_matching%' AND state <> 'idle'",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrations = "../../migrations")]
async fn an_export_streams_and_stops_when_the_client_goes_away(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let auditor = app.api_login("audrey", &[Role::Auditor]).await;
    filler(&pool, 60_000).await;
    let req = Request::builder()
        .uri("/api/v1/audit/events/export?format=ndjson")
        .header(header::AUTHORIZATION, format!("Bearer {}", auditor.token))
        .body(Body::empty())
        .unwrap();
    let resp = app.open(req).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    // The first bytes come before the rows are all read: the header line.
    let first = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("a first chunk soon")
        .unwrap()
        .unwrap()
        .into_data()
        .unwrap();
    assert!(first.starts_with(b"{\"export\""));
    // Take a little more, then go away with most of 60,000 rows unread.
    let mut taken = first.len();
    while taken < 1_000_000 {
        let frame = body.frame().await.unwrap().unwrap();
        taken += frame.into_data().map(|d| d.len()).unwrap_or(0);
    }
    // While the client holds the body unread, the export waits, reading.
    assert_eq!(exports_reading(&pool).await, 1);
    drop(body);
    let mut stopped = false;
    for _ in 0..100 {
        if exports_reading(&pool).await == 0 {
            stopped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(stopped, "the export still reads after its client left");
    // Nothing half-read is left behind: the pool still answers.
    let again = app
        .api(
            Method::GET,
            "/api/v1/audit/events?limit=1",
            Some(&auditor.token),
            None,
        )
        .await;
    assert_eq!(again.status, StatusCode::OK);
}

#[sqlx::test(migrations = "../../migrations")]
async fn the_page_filters_pages_and_offers_the_downloads(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let b = board(&app).await;
    let auditor = app.browser_login("olga", &[Role::Auditor]).await;
    let page = app
        .get_page("/audit?outcome=refused", Some(&auditor.cookie))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body
            .contains("Events that record a refusal, newest first."),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("Refusals only\" selected")
            || page.body.contains("value=\"refused\" selected")
    );
    assert!(page.body.contains("tried to vote on"), "{}", page.body);
    assert!(
        page.body
            .contains("/audit/export?outcome=refused&#38;trail=approvals&#38;format=csv"),
        "{}",
        page.body
    );

    let bad = app
        .get_page("/audit?from=2026-13-01&change=CHG-x", Some(&auditor.cookie))
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.body.contains("id=\"from-error\""), "{}", bad.body);
    assert!(bad.body.contains("Give a date as YYYY-MM-DD."));
    assert!(bad.body.contains("id=\"change-error\""));
    assert!(
        bad.body.contains("value=\"CHG-x\""),
        "the form keeps what was typed"
    );
    assert!(bad.body.contains("id=\"audit-hidden\""));

    // Paging through the form's links.
    let mut uri = "/audit".to_owned();
    let mut pages = 0;
    let mut seen = 0;
    loop {
        let page = app.get_page(&uri, Some(&auditor.cookie)).await;
        assert_eq!(page.status, StatusCode::OK);
        seen += page
            .body
            .matches("<details class=\"event-details\">")
            .count();
        pages += 1;
        let Some(at) = page.body.find("id=\"page-older\"") else {
            break;
        };
        let href_start = page.body[..at].rfind("href=\"").unwrap() + 6;
        let href_end = href_start + page.body[href_start..].find('"').unwrap();
        uri = page.body[href_start..href_end].replace("&#38;", "&");
        assert!(pages < 20);
    }
    // Everything the page could show (its own reads record nothing).
    assert!(seen as i64 >= app.audit_count().await - 1, "{seen}");

    let download = app
        .get_page(
            &format!(
                "/audit/export?change=CHG-{}&trail=approvals&format=csv",
                b.number
            ),
            Some(&auditor.cookie),
        )
        .await;
    assert_eq!(download.status, StatusCode::OK);
    assert!(
        download
            .header("content-disposition")
            .unwrap()
            .contains("cab-audit-approvals-")
    );
    assert!(download.body.contains("Vote: Approve"));

    // A download address that cannot be read is refused, never read as
    // "everything".
    let unreadable = app
        .get_page(
            "/audit/export?actor=a&actor=b&trail=events",
            Some(&auditor.cookie),
        )
        .await;
    assert_eq!(
        unreadable.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        unreadable.body
    );
    assert!(unreadable.header("content-disposition").is_none());

    // An engineer's browser is refused the page and the download alike.
    let engineer = app.browser_login("ed", &[Role::Engineer]).await;
    for uri in ["/audit", "/audit/export?trail=events"] {
        let refused = app.get_page(uri, Some(&engineer.cookie)).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{uri}");
        assert!(refused.body.contains("Only auditors and administrators"));
    }
}

#[sqlx::test(migrations = "../../migrations")]
async fn hostile_filter_text_gets_an_answer_not_an_error(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let auditor = app.api_login("audrey", &[Role::Auditor]).await;
    for query in [
        "?actor=%00",
        "?entity_type=change&entity_id=a%00b",
        "?actor=%F0%9F%98%80%27%22%3B--",
        "?change=CHG-99999999999999999999",
        "?before=99999999999999999999",
        "?from=0001-01-01",
        "?from=9999-12-31",
        "?actor=%ED%A0%80",
    ] {
        for path in [
            "/api/v1/audit/events",
            "/api/v1/audit/events/export",
            "/api/v1/audit/approvals/export?format=ndjson",
        ] {
            let uri = if path.contains('?') {
                format!("{path}&{}", &query[1..])
            } else {
                format!("{path}{query}")
            };
            let resp = app.api(Method::GET, &uri, Some(&auditor.token), None).await;
            assert!(
                resp.status == StatusCode::OK
                    || resp.status == StatusCode::UNPROCESSABLE_ENTITY
                    || resp.status == StatusCode::BAD_REQUEST,
                "{uri}: {} {}",
                resp.status,
                resp.body
            );
        }
    }
}
