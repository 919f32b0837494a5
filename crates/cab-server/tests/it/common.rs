//! Test helpers that speak the users' language: `app.user(..)`,
//! `app.api_login(..)`, `app.browser_login(..)`.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use cab_db::users::UserRow;
use cab_domain::Role;
use cab_server::AppState;
use cab_server::accounts::{self, NewAccount, Operator};
use cab_server::config::Settings;
use cab_server::request::Origin;
use serde_json::Value;
use sqlx::PgPool;
use tower::ServiceExt;

pub const TEST_SECRET: &[u8] = b"test secret key that is long enough for CAB";

pub struct TestApp {
    pub pool: PgPool,
    pub state: AppState,
    router: Router,
}

#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl TestResponse {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The problem document's `code`, asserting the content type.
    pub fn problem_code(&self) -> String {
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{}",
            self.body
        );
        self.json()["code"].as_str().unwrap_or_default().to_owned()
    }

    /// A `Set-Cookie` value for `name`, if the response sets it.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| {
                let first = v.split(';').next()?;
                let (k, val) = first.split_once('=')?;
                (k == name).then(|| val.to_owned())
            })
    }
}

/// An API caller holding a bearer token.
#[derive(Clone)]
pub struct ApiClient {
    pub token: String,
    pub user: UserRow,
}

/// A browser session: its cookie and the CSRF token from its pages.
#[derive(Clone)]
pub struct BrowserSession {
    pub cookie: String,
    pub csrf: String,
    pub user: UserRow,
}

pub fn role_name(role: Role) -> String {
    role.as_str().to_owned()
}

/// The value of the first hidden `_csrf` field in a page.
pub fn csrf_in(html: &str) -> String {
    let marker = "name=\"_csrf\" value=\"";
    let start = html
        .find(marker)
        .map(|i| i + marker.len())
        .expect("page has a CSRF field");
    let end = html[start..].find('"').expect("closing quote") + start;
    html[start..end].to_owned()
}

impl TestApp {
    pub async fn new(pool: PgPool) -> Self {
        Self::from_state(AppState::new(pool, Settings::for_tests(), TEST_SECRET).expect("state"))
    }

    pub fn from_state(state: AppState) -> Self {
        let router = cab_server::router(state.clone());
        TestApp {
            pool: state.pool.clone(),
            state,
            router,
        }
    }

    /// Sends a request as if from `addr`.
    pub async fn send_from(&self, addr: SocketAddr, mut req: Request<Body>) -> TestResponse {
        req.extensions_mut().insert(ConnectInfo(addr));
        let resp = self.router.clone().oneshot(req).await.expect("infallible");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("body");
        TestResponse {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    /// Sends a request and hands back the response with its body unread,
    /// for a test that reads a stream a piece at a time.
    pub async fn open(&self, mut req: Request<Body>) -> axum::response::Response {
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
        self.router.clone().oneshot(req).await.expect("infallible")
    }

    pub async fn send(&self, req: Request<Body>) -> TestResponse {
        self.send_from(SocketAddr::from(([127, 0, 0, 1], 40000)), req)
            .await
    }

    /// An API request; `token` as Bearer, `body` as JSON.
    pub async fn api(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> TestResponse {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = match body {
            Some(b) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .expect("request");
        self.send(req).await
    }

    pub async fn get_page(&self, uri: &str, cookie: Option<&str>) -> TestResponse {
        let mut req = Request::builder().uri(uri);
        if let Some(c) = cookie {
            req = req.header(header::COOKIE, c);
        }
        self.send(req.body(Body::empty()).expect("request")).await
    }

    pub async fn post_form(
        &self,
        uri: &str,
        cookie: Option<&str>,
        pairs: &[(&str, &str)],
    ) -> TestResponse {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(c) = cookie {
            req = req.header(header::COOKIE, c);
        }
        let body = serde_urlencoded::to_string(pairs).expect("form");
        self.send(req.body(Body::from(body)).expect("request"))
            .await
    }

    /// Creates a person with these roles (as the command line would) and
    /// returns them with their password.
    pub async fn user(&self, username: &str, roles: &[Role]) -> (UserRow, String) {
        let password = format!("{username}-correct-horse-battery");
        let created = accounts::create(
            &self.pool,
            &self.state.passwords,
            &Operator::Cli,
            &Origin::cli(),
            NewAccount {
                username: username.into(),
                display_name: String::new(),
                roles: roles.iter().copied().map(role_name).collect(),
                password: Some(password.clone()),
                service: false,
            },
        )
        .await
        .unwrap_or_else(|e| panic!("creating {username}: {e}"));
        (created.user, password)
    }

    pub async fn service_account(&self, username: &str, roles: &[Role]) -> UserRow {
        accounts::create(
            &self.pool,
            &self.state.passwords,
            &Operator::Cli,
            &Origin::cli(),
            NewAccount {
                username: username.into(),
                display_name: String::new(),
                roles: roles.iter().copied().map(role_name).collect(),
                password: None,
                service: true,
            },
        )
        .await
        .expect("service account")
        .user
    }

    pub async fn token(&self, username: &str, password: &str) -> TestResponse {
        self.api(
            Method::POST,
            "/api/v1/auth/token",
            None,
            Some(serde_json::json!({ "username": username, "password": password })),
        )
        .await
    }

    /// A new user with these roles, signed in to the API.
    pub async fn api_login(&self, username: &str, roles: &[Role]) -> ApiClient {
        let (user, password) = self.user(username, roles).await;
        let resp = self.token(username, &password).await;
        assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
        ApiClient {
            token: resp.json()["access_token"]
                .as_str()
                .expect("token")
                .to_owned(),
            user,
        }
    }

    /// Signs in through the login form, as a browser would.
    pub async fn browser_login_with(&self, user: UserRow, password: &str) -> BrowserSession {
        let form = self.get_page("/login", None).await;
        assert_eq!(form.status, StatusCode::OK);
        let login_cookie = format!(
            "cab_login={}",
            form.cookie("cab_login").expect("login cookie")
        );
        let csrf = csrf_in(&form.body);
        let resp = self
            .post_form(
                "/login",
                Some(&login_cookie),
                &[
                    ("_csrf", &csrf),
                    ("username", &user.username),
                    ("password", password),
                    ("next", "/"),
                ],
            )
            .await;
        assert_eq!(resp.status, StatusCode::SEE_OTHER, "{}", resp.body);
        let cookie = format!(
            "cab_session={}",
            resp.cookie("cab_session").expect("session cookie")
        );
        let home = self.get_page("/", Some(&cookie)).await;
        assert_eq!(home.status, StatusCode::OK, "{}", home.body);
        BrowserSession {
            csrf: csrf_in(&home.body),
            cookie,
            user,
        }
    }

    pub async fn browser_login(&self, username: &str, roles: &[Role]) -> BrowserSession {
        let (user, password) = self.user(username, roles).await;
        self.browser_login_with(user, &password).await
    }

    /// Every audit event as (action, payload), oldest first.
    pub async fn audit_events(&self) -> Vec<(String, Value)> {
        sqlx::query_as::<_, (String, Value)>(
            "SELECT action, payload FROM audit_events ORDER BY seq",
        )
        .fetch_all(&self.pool)
        .await
        .expect("audit events")
    }

    pub async fn audit_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM audit_events")
            .fetch_one(&self.pool)
            .await
            .expect("count")
    }

    /// The denied attempts recorded, as (attempted, reason).
    pub async fn denials(&self) -> Vec<(String, String)> {
        self.audit_events()
            .await
            .into_iter()
            .filter(|(a, _)| a == "access.denied")
            .map(|(_, p)| {
                (
                    p["attempted"].as_str().unwrap_or_default().to_owned(),
                    p["reason"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    pub async fn roles_of(&self, username: &str) -> Vec<String> {
        sqlx::query_scalar("SELECT roles FROM users WHERE username = $1")
            .bind(username)
            .fetch_one(&self.pool)
            .await
            .expect("roles")
    }

    pub async fn user_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM users")
            .fetch_one(&self.pool)
            .await
            .expect("count")
    }
}
