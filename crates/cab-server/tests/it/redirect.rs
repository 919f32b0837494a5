//! Where the login page sends people: only back to a page on this site,
//! whatever someone wrote into the `next` parameter of a link.

use axum::http::StatusCode;
use cab_domain::Role;
use sqlx::PgPool;

use crate::common::{TestApp, csrf_in};

/// `next` values as the server reads them (already percent-decoded once).
fn hostile_targets() -> Vec<String> {
    let mut targets: Vec<String> = [
        "//evil.example",
        "///evil.example",
        "/\\evil.example",
        "\\\\evil.example",
        "/\t/evil.example",
        "\t//evil.example",
        " //evil.example",
        "/ /evil.example",
        "/\r\n/evil.example",
        "/\n/evil.example",
        "/changes\r\nSet-Cookie: cab_session=x",
        "/%09/evil.example",
        "/%0d%0a/evil.example",
        "/%5Cevil.example",
        "/%5c%5cevil.example",
        "/%2F%2Fevil.example",
        "/%2f/evil.example",
        "/%252F%252Fevil.example",
        "/%2509/evil.example",
        "https://evil.example",
        "HTTPS://evil.example/changes",
        "http:evil.example",
        "evil.example",
        "javascript:alert(document.cookie)",
        "/javascript:alert(1)#",
        "data:text/html,<script>alert(1)</script>",
        "/changes?q=<script>",
        "/changes#x",
        "/%",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    targets.push(format!("/{}", "a".repeat(5000)));
    targets.push(format!("//evil.example/{}", "a".repeat(5000)));
    targets
}

/// Query strings as they would be written into a link, unchanged.
const HOSTILE_QUERIES: &[&str] = &[
    "next=/%09/evil.example",
    "next=/%0D%0A/evil.example",
    "next=/%0a/evil.example",
    "next=//evil.example",
    "next=/%5Cevil.example",
    "next=/%2F%2Fevil.example",
    "next=%2F%2Fevil.example",
    "next=%2F%09%2Fevil.example",
    "next=/%252F%252Fevil.example",
    "next=https://evil.example",
    "next=https%3A%2F%2Fevil.example",
    "next=javascript:alert(1)",
    "next=%09//evil.example",
    "next=/%00/evil.example",
];

fn encode(value: &str) -> String {
    serde_urlencoded::to_string([("next", value)]).unwrap()
}

/// Every `/login` address built from the hostile values.
fn hostile_login_uris() -> Vec<String> {
    let mut uris: Vec<String> = hostile_targets()
        .iter()
        .map(|t| format!("/login?{}", encode(t)))
        .collect();
    uris.extend(HOSTILE_QUERIES.iter().map(|q| format!("/login?{q}")));
    uris
}

/// A `Location` a browser resolves against this site, whichever way it
/// bends the rules: a path, no host, nothing it would strip or turn round.
fn assert_same_origin(location: &str, context: &str) {
    let bytes = location.as_bytes();
    assert_eq!(bytes.first(), Some(&b'/'), "{context}: {location:?}");
    assert!(
        !matches!(bytes.get(1), Some(b'/' | b'\\')),
        "{context}: {location:?}"
    );
    assert!(
        location.bytes().all(|b| b.is_ascii_graphic() && b != b'\\'),
        "{context}: {location:?}"
    );
    let lower = location.to_ascii_lowercase();
    for encoded in ["%2f", "%5c", "%09", "%0a", "%0d", "%00"] {
        assert!(
            !lower.starts_with(&format!("/{encoded}")),
            "{context}: {location:?}"
        );
    }
}

/// The hidden `next` field of the login form.
fn next_field(html: &str) -> String {
    let marker = "name=\"next\" value=\"";
    let start = html.find(marker).expect("login form has a next field") + marker.len();
    let end = html[start..].find('"').expect("closing quote") + start;
    html[start..end].to_owned()
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn the_login_form_carries_only_paths_on_this_site(pool: PgPool) {
    let app = TestApp::new(pool).await;
    for uri in hostile_login_uris() {
        let page = app.get_page(&uri, None).await;
        assert_eq!(page.status, StatusCode::OK, "{uri}");
        assert_eq!(next_field(&page.body), "/", "{uri}");
    }
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_signed_in_visitor_is_sent_only_to_paths_on_this_site(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let session = app.browser_login("erin", &[Role::Engineer]).await;
    for uri in hostile_login_uris() {
        let resp = app.get_page(&uri, Some(&session.cookie)).await;
        assert_eq!(resp.status, StatusCode::SEE_OTHER, "{uri}");
        let location = resp.header("location").expect("a redirect");
        assert_same_origin(location, &uri);
        assert_eq!(location, "/", "{uri}");
    }
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn signing_in_redirects_only_to_paths_on_this_site(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let (user, password) = app.user("erin", &[Role::Engineer]).await;
    let form = app.get_page("/login", None).await;
    let cookie = format!("cab_login={}", form.cookie("cab_login").unwrap());
    let csrf = csrf_in(&form.body);
    for next in hostile_targets() {
        let resp = app
            .post_form(
                "/login",
                Some(&cookie),
                &[
                    ("_csrf", &csrf),
                    ("username", &user.username),
                    ("password", &password),
                    ("next", &next),
                ],
            )
            .await;
        assert_eq!(
            resp.status,
            StatusCode::SEE_OTHER,
            "{next:?}: {}",
            resp.body
        );
        let location = resp.header("location").expect("a redirect");
        assert_same_origin(location, &next);
        assert_eq!(location, "/", "{next:?}");
    }
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn signing_in_returns_to_the_page_that_asked_for_it(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let (user, password) = app.user("adam", &[Role::Admin]).await;
    let page = app.get_page("/admin/users?role=admin", None).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    let to_login = page.header("location").unwrap().to_owned();
    let form = app.get_page(&to_login, None).await;
    let next = next_field(&form.body);
    assert_eq!(next, "/admin/users?role=admin");
    let cookie = format!("cab_login={}", form.cookie("cab_login").unwrap());
    let resp = app
        .post_form(
            "/login",
            Some(&cookie),
            &[
                ("_csrf", &csrf_in(&form.body)),
                ("username", &user.username),
                ("password", &password),
                ("next", &next),
            ],
        )
        .await;
    assert_eq!(resp.status, StatusCode::SEE_OTHER, "{}", resp.body);
    assert_eq!(resp.header("location"), Some("/admin/users?role=admin"));
}
