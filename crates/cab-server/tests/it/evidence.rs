//! The evidence pack: one archive per period, each control's population and
//! exceptions, a sample the seed reproduces, and a manifest whose signature
//! and sums hold; opened by Python's zipfile as an auditor's tools would.

use std::collections::BTreeMap;

use axum::http::{Method, StatusCode};
use cab_domain::Role;
use cab_domain::checkpoint::{VerifierKey, open_text};
use chrono::Utc;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::common::{ApiClient, TestApp};
use crate::deployments::request;

/// Unpacks an archive with Python's zipfile (whose `testzip` checks every
/// CRC): name → contents.
fn unzip(bytes: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let dir = std::env::temp_dir().join(format!("cab-pack-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let zip = dir.join("pack.zip");
    std::fs::write(&zip, bytes).unwrap();
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import sys, zipfile, json\n\
             z = zipfile.ZipFile(sys.argv[1])\n\
             assert z.testzip() is None\n\
             z.extractall(sys.argv[2])\n\
             print(json.dumps(z.namelist()))",
        )
        .arg(&zip)
        .arg(dir.join("x"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
    let files = names
        .into_iter()
        .map(|n| {
            let bytes = std::fs::read(dir.join("x").join(&n)).unwrap();
            (n, bytes)
        })
        .collect();
    std::fs::remove_dir_all(&dir).unwrap();
    files
}

fn text(files: &BTreeMap<String, Vec<u8>>, name: &str) -> String {
    String::from_utf8(
        files
            .get(name)
            .unwrap_or_else(|| panic!("{name} in the pack"))
            .clone(),
    )
    .unwrap()
}

/// Three changes deployed to PROD, one refused self-approval, one attempt
/// to deploy straight to PROD refused for promotion order.
async fn period_of_work(app: &TestApp) -> ApiClient {
    let cast = app.cast().await;
    for _ in 0..3 {
        let id = app.approved_change(&cast.erin, &cast.carol).await;
        app.promote_to_stage(&cast.pipeline, &id).await;
        app.deploy(&cast.pipeline, request(&id, "prod", Some("rita")))
            .await;
    }
    // Erin, also a CAB member now, tries to approve her own change.
    let eve = app
        .api_login("eve", &[Role::Engineer, Role::CabMember])
        .await;
    let own = app.open_change(&eve).await;
    app.change_action(&eve, &own, "submit", None).await;
    let refused = app.vote(&eve, &own, "approve", "").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    // A change approved but never promoted: PROD is refused.
    let skip = app.approved_change(&cast.erin, &cast.carol).await;
    let mut straight = request(&skip, "prod", Some("rita"));
    straight["artifact"]["digest"] = serde_json::json!(crate::deployments::digest('c'));
    let gate = app.gate(&cast.pipeline, straight).await;
    assert_eq!(gate.status, StatusCode::FORBIDDEN, "{}", gate.body);
    app.api_login("audrey", &[Role::Auditor]).await
}

async fn pack(app: &TestApp, who: &ApiClient, query: &str) -> BTreeMap<String, Vec<u8>> {
    let resp = app
        .api(
            Method::GET,
            &format!("/api/v1/audit/evidence{query}"),
            Some(&who.token),
            None,
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(resp.header("content-type"), Some("application/zip"));
    assert!(
        resp.header("content-disposition")
            .unwrap()
            .contains("cab-evidence-")
    );
    // The body went through a String: the test asks for bytes again.
    let raw = app
        .open(
            axum::http::Request::builder()
                .uri(format!("/api/v1/audit/evidence{query}"))
                .header("authorization", format!("Bearer {}", who.token))
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    let bytes = axum::body::to_bytes(raw.into_body(), usize::MAX)
        .await
        .unwrap();
    unzip(&bytes)
}

#[sqlx::test(migrations = "../../migrations")]
async fn the_pack_holds_each_controls_population_and_exceptions(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let auditor = period_of_work(&app).await;
    let files = pack(&app, &auditor, "?sample=2&seed=7").await;
    for name in [
        "index.html",
        "MANIFEST.txt",
        "A.8.32-change-management/production-changes.csv",
        "A.8.32-change-management/emergency-changes.csv",
        "A.8.32-change-management/changes-closed-failed.csv",
        "A.8.32-change-management/approval-trail.csv",
        "A.5.3-segregation-of-duties/separation-of-duties-refusals.csv",
        "A.5.3-segregation-of-duties/worked-on-and-decided.csv",
        "A.5.3-segregation-of-duties/role-grants.csv",
        "A.8.31-separation-of-environments/deployments.csv",
        "A.8.31-separation-of-environments/deployments-by-environment.csv",
        "A.8.31-separation-of-environments/promotion-and-freeze-refusals.csv",
        "A.8.31-separation-of-environments/break-glass.csv",
        "A.8.31-separation-of-environments/deployments-nobody-authorized.csv",
        "audit/checkpoint-last.txt",
        "audit/keys.txt",
    ] {
        assert!(files.contains_key(name), "{name}: {:?}", files.keys());
    }
    let production = text(&files, "A.8.32-change-management/production-changes.csv");
    assert_eq!(production.lines().count(), 4, "{production}");
    assert!(
        production.lines().skip(1).all(|l| l.contains(",carol,")),
        "{production}"
    );
    // The refused self-approval is there, and nobody decided on their own
    // work: the list is empty but for its header, and still in the pack.
    let sod = text(
        &files,
        "A.5.3-segregation-of-duties/separation-of-duties-refusals.csv",
    );
    assert_eq!(sod.lines().count(), 2, "{sod}");
    assert!(
        sod.contains("eve") && sod.contains("self_approval"),
        "{sod}"
    );
    let own = text(
        &files,
        "A.5.3-segregation-of-duties/worked-on-and-decided.csv",
    );
    assert_eq!(own.lines().count(), 1, "{own}");
    let guards = text(
        &files,
        "A.8.31-separation-of-environments/promotion-and-freeze-refusals.csv",
    );
    assert!(guards.contains("promotion_order"), "{guards}");
    let by_env = text(
        &files,
        "A.8.31-separation-of-environments/deployments-by-environment.csv",
    );
    assert!(by_env.contains("PROD,yes,3,3"), "{by_env}");
    // The approval trail holds the refused self-approval and the refused
    // straight-to-PROD deployment, each said for what it is.
    let trail = text(&files, "A.8.32-change-management/approval-trail.csv");
    assert!(
        trail
            .lines()
            .any(|l| l.contains("Refused: tried to vote on it") && l.contains(",Refused,")),
        "{trail}"
    );
    assert!(
        trail
            .lines()
            .any(|l| l.contains("Refused: tried to deploy it")
                && l.contains("Not reached (refused by another rule)")),
        "{trail}"
    );
    let grants = text(&files, "A.5.3-segregation-of-duties/role-grants.csv");
    assert!(grants.contains("Account created"), "{grants}");
    // The sample: two of the three, each told in full.
    let sampled: Vec<&String> = files.keys().filter(|k| k.starts_with("sample/")).collect();
    assert_eq!(sampled.len(), 2, "{sampled:?}");
    let page = text(&files, sampled[0]);
    assert!(page.contains("Everything recorded about it"));
    assert!(page.contains("Rollback plan"));
    assert!(page.contains("seed 7"));
    let index = text(&files, "index.html");
    assert!(index.contains("seed <strong>7</strong>"), "{index}");
    // No checkpoint was signed before today: the period is checked from the
    // chain's first event, and no later checkpoint stands in for a first.
    assert!(!files.contains_key("audit/checkpoint-first.txt"));
    assert!(
        index.contains("No checkpoint was signed before the period")
            && index.contains("<code>cab audit verify --export FILE --key KEY</code>"),
        "{index}"
    );
    // Tomorrow's period starts after today's checkpoints: the latest (the
    // pack signs one first) is its first.
    let tomorrow = (Utc::now() + chrono::Duration::days(1)).date_naive();
    let later = pack(&app, &auditor, &format!("?from={tomorrow}&to={tomorrow}")).await;
    let signed: i64 = sqlx::query_scalar("SELECT max(seq) FROM audit_checkpoints")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let first = text(&later, "audit/checkpoint-first.txt");
    let index = text(&later, "index.html");
    assert!(
        index.contains(&format!("the first, event {signed}, signed"))
            && index.contains("--from-checkpoint audit/checkpoint-first.txt"),
        "{index}"
    );
    let keys = text(&later, "audit/keys.txt");
    let key = VerifierKey::parse(keys.lines().next().unwrap()).unwrap();
    assert_eq!(
        cab_domain::checkpoint::open(&first, &key)
            .expect("signed")
            .seq,
        signed
    );
}

#[sqlx::test(migrations = "../../migrations")]
async fn the_manifest_is_signed_and_its_sums_hold(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let auditor = period_of_work(&app).await;
    let files = pack(&app, &auditor, "?sample=3&seed=11").await;
    let keys = text(&files, "audit/keys.txt");
    let key = VerifierKey::parse(keys.lines().next().unwrap()).unwrap();
    // The same key the API publishes.
    let published = app
        .api(Method::GET, "/api/v1/audit/keys", None, None)
        .await
        .json();
    assert_eq!(published[0]["verifier_key"], keys.lines().next().unwrap());
    let manifest = text(&files, "MANIFEST.txt");
    let signed = open_text(&manifest, &key).expect("the manifest's signature holds");
    assert!(signed.starts_with("CAB evidence pack\n"), "{signed}");
    assert!(signed.contains("sample 3 seed 11\n"));
    let sums: Vec<(&str, &str)> = signed.lines().filter_map(|l| l.split_once("  ")).collect();
    assert_eq!(sums.len(), files.len() - 1, "every file but the manifest");
    for (sum, name) in sums {
        assert_eq!(sum, hex::encode(Sha256::digest(&files[name])), "{name}");
    }
    // The last checkpoint opens with the key and covers the period's events.
    let last = text(&files, "audit/checkpoint-last.txt");
    let cp = cab_domain::checkpoint::open(&last, &key).expect("signed");
    assert!(cp.seq > 10);
    // A file changed after signing no longer matches its sum.
    let mut tampered = files.clone();
    tampered.insert(
        "A.5.3-segregation-of-duties/worked-on-and-decided.csv".into(),
        b"Change,Person\r\n".to_vec(),
    );
    assert_ne!(
        hex::encode(Sha256::digest(
            &tampered["A.5.3-segregation-of-duties/worked-on-and-decided.csv"]
        )),
        signed
            .lines()
            .find(|l| l.ends_with("worked-on-and-decided.csv"))
            .unwrap()[..64]
    );
}

#[sqlx::test(migrations = "../../migrations")]
async fn the_seed_reproduces_the_sample_and_the_pack_is_recorded(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let auditor = period_of_work(&app).await;
    let picked = |files: &BTreeMap<String, Vec<u8>>| {
        files
            .keys()
            .filter(|k| k.starts_with("sample/"))
            .cloned()
            .collect::<Vec<_>>()
    };
    let a = picked(&pack(&app, &auditor, "?sample=2&seed=12345").await);
    let b = picked(&pack(&app, &auditor, "?sample=2&seed=12345").await);
    assert_eq!(a, b);
    let everything = picked(&pack(&app, &auditor, "?sample=100&seed=1").await);
    assert_eq!(everything.len(), 3, "no more than there is");
    let none = picked(&pack(&app, &auditor, "?sample=0").await);
    assert!(none.is_empty());
    let events = app.audit_events().await;
    let recorded: Vec<_> = events
        .iter()
        .filter(|(a, p)| a == "audit.exported" && p["trail"] == "evidence")
        .collect();
    // Each pack is asked for twice by `pack` (once as text, once as bytes).
    assert_eq!(recorded.len(), 8);
    assert_eq!(recorded[0].1["seed"], 12345);
    assert_eq!(recorded[0].1["sample"], 2);
}

#[sqlx::test(migrations = "../../migrations")]
async fn bad_requests_are_named_and_strangers_refused(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let auditor = app.api_login("audrey", &[Role::Auditor]).await;
    for (query, field) in [
        ("?from=2026-13-01", "from"),
        ("?sample=101", "sample"),
        ("?sample=-1", "sample"),
        ("?seed=abc", "seed"),
        ("?from=2026-11-02&to=2026-11-01", "from"),
    ] {
        let resp = app
            .api(
                Method::GET,
                &format!("/api/v1/audit/evidence{query}"),
                Some(&auditor.token),
                None,
            )
            .await;
        assert_eq!(
            resp.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{query}: {}",
            resp.body
        );
        assert_eq!(
            resp.json()["errors"][0]["field"],
            field,
            "{query}: {}",
            resp.body
        );
    }
    let erin = app.api_login("erin", &[Role::Engineer]).await;
    let before = app.audit_count().await;
    let refused = app
        .api(
            Method::GET,
            "/api/v1/audit/evidence",
            Some(&erin.token),
            None,
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(app.audit_count().await, before + 1);
    // The form: shown to the auditor, re-shown with the error beside the
    // field, refused to the engineer.
    let audrey = app.browser_login("olga", &[Role::Auditor]).await;
    let form = app.get_page("/audit/evidence", Some(&audrey.cookie)).await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.body.contains("id=\"evidence-form\""));
    let bad = app
        .get_page("/audit/evidence/pack?sample=500", Some(&audrey.cookie))
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.body.contains("id=\"sample-error\""), "{}", bad.body);
    assert!(bad.body.contains("value=\"500\""));
    let ok = app
        .get_page("/audit/evidence/pack?sample=1", Some(&audrey.cookie))
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.header("content-type"), Some("application/zip"));
    let ed = app.browser_login("ed", &[Role::Engineer]).await;
    for uri in ["/audit/evidence", "/audit/evidence/pack"] {
        let page = app.get_page(uri, Some(&ed.cookie)).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{uri}");
    }
}

#[sqlx::test(migrations = "../../migrations")]
async fn the_command_line_writes_the_same_pack(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    period_of_work(&app).await;
    let out = std::env::temp_dir().join(format!("cab-pack-{}.zip", uuid::Uuid::new_v4()));
    let secret = String::from_utf8(crate::common::TEST_SECRET.to_vec()).unwrap();
    let (ok, stdout, err) = crate::audit::cab(
        &pool,
        &[
            "audit",
            "evidence",
            "--sample",
            "2",
            "--seed",
            "5",
            "--output",
            out.to_str().unwrap(),
            "--secret-key",
            &secret,
        ],
    );
    assert!(ok, "{err}");
    assert!(stdout.contains("sample seed 5"), "{stdout}");
    let files = unzip(&std::fs::read(&out).unwrap());
    std::fs::remove_file(&out).unwrap();
    assert_eq!(files.keys().filter(|k| k.starts_with("sample/")).count(), 2);
    let (ok, _, err) = crate::audit::cab(
        &pool,
        &[
            "audit",
            "evidence",
            "--from",
            "2026-99-01",
            "--output",
            "/tmp/x.zip",
            "--secret-key",
            &secret,
        ],
    );
    assert!(!ok);
    assert!(err.contains("YYYY-MM-DD"), "{err}");
}

#[sqlx::test(migrations = "../../migrations")]
async fn a_pack_of_a_chain_that_does_not_verify_says_so_and_points_to_no_checkpoint(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let auditor = period_of_work(&app).await;
    // Edited around CAB before any checkpoint was signed.
    crate::audit::tamper(
        &pool,
        "UPDATE audit_events SET action = 'change.approved' WHERE seq = 2",
    )
    .await;
    let files = pack(&app, &auditor, "").await;
    let index = text(&files, "index.html");
    assert!(
        index.contains("The audit chain did not verify when this pack was made")
            && index.contains("No checkpoint has been signed")
            && !index.contains("audit/checkpoint-last.txt"),
        "{index}"
    );
    assert!(!files.contains_key("audit/checkpoint-last.txt"));
    assert!(!files.contains_key("audit/checkpoint-first.txt"));
}
