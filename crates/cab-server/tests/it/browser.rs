//! Journeys in a real headless Chromium, driven over WebDriver, against the
//! `cab` binary started as an operator would start it.

use std::net::TcpListener as StdListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::PgPool;

use crate::cli::{add_user, start_server};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// The window the journeys run in, and the phone width every page must fit.
const DESKTOP: (i64, i64) = (1280, 900);
const PHONE: (i64, i64) = (390, 844);
const TAB: &str = "\u{E004}";
const ENTER: &str = "\u{E007}";

/// axe-core's script: `CAB_AXE_JS`, or where tests/run.sh installs it.
fn axe_source() -> &'static str {
    static SOURCE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SOURCE.get_or_init(|| {
        let path = std::env::var("CAB_AXE_JS").unwrap_or_else(|_| {
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../target/axe/node_modules/axe-core/axe.min.js"
            )
            .into()
        });
        std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!("axe-core not found at {path} ({e}); tests/run.sh installs it")
        })
    })
}

/// Just enough of the W3C WebDriver protocol for our journeys.
pub struct Browser {
    http: reqwest::Client,
    base: String,
    session: String,
    _driver: DriverProcess,
}

struct DriverProcess(Child);

impl Drop for DriverProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Browser {
    pub async fn start() -> Browser {
        let port = free_port();
        let driver =
            Command::new(std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into()))
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("chromedriver must be installed (tests/run.sh installs it)");
        let driver = DriverProcess(driver);
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        for _ in 0..100 {
            if let Ok(r) = http.get(format!("{base}/status")).send().await
                && r.status().is_success()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = std::env::temp_dir().join(format!("cab-chromium-{}", uuid::Uuid::new_v4()));
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--disable-quic", "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync",
                         format!("--window-size={},{}", DESKTOP.0, DESKTOP.1),
                         format!("--user-data-dir={}", profile.display())]
            }
        }}});
        let resp: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .unwrap();
        let session = resp["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {resp}"))
            .to_owned();
        Browser {
            http,
            base,
            session,
            _driver: driver,
        }
    }

    async fn try_cmd(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Value> {
        let url = format!("{}/session/{}{}", self.base, self.session, path);
        let mut req = self.http.request(method, url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let v: Value = req.send().await.unwrap().json().await.unwrap();
        if v["value"].get("error").is_some() {
            return Err(v["value"].clone());
        }
        Ok(v["value"].clone())
    }

    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.try_cmd(method, path, body)
            .await
            .unwrap_or_else(|e| panic!("WebDriver {path}: {e}"))
    }

    /// Waits (up to five seconds) for the current URL to satisfy `ok`:
    /// a click that submits a form returns before the next page has loaded.
    pub async fn wait_url(&self, ok: impl Fn(&str) -> bool) -> String {
        let mut url = String::new();
        for _ in 0..50 {
            url = self.url().await;
            if ok(&url) {
                return url;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("timed out waiting for the URL; still at {url}");
    }

    pub async fn goto(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    /// The element matching `css`, waiting up to five seconds for it.
    pub async fn find(&self, css: &str) -> String {
        let query = json!({ "using": "css selector", "value": css });
        let mut last = Value::Null;
        for _ in 0..50 {
            match self
                .try_cmd(reqwest::Method::POST, "/element", Some(query.clone()))
                .await
            {
                Ok(v) => {
                    return v[ELEMENT]
                        .as_str()
                        .unwrap_or_else(|| panic!("find {css}: {v}"))
                        .to_owned();
                }
                Err(e) => last = e,
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no element {css}: {last}");
    }

    pub async fn count(&self, css: &str) -> usize {
        self.cmd(
            reqwest::Method::POST,
            "/elements",
            Some(json!({ "using": "css selector", "value": css })),
        )
        .await
        .as_array()
        .map_or(0, Vec::len)
    }

    pub async fn texts(&self, css: &str) -> Vec<String> {
        let els = self
            .cmd(
                reqwest::Method::POST,
                "/elements",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
        let mut out = Vec::new();
        for el in els.as_array().unwrap() {
            let id = el[ELEMENT].as_str().unwrap();
            out.push(
                self.cmd(reqwest::Method::GET, &format!("/element/{id}/text"), None)
                    .await
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
        out
    }

    /// The element's text; if the page is replaced under us (a form was
    /// just submitted), looks the element up again.
    pub async fn text(&self, css: &str) -> String {
        let mut last = Value::Null;
        for _ in 0..50 {
            let id = self.find(css).await;
            match self
                .try_cmd(reqwest::Method::GET, &format!("/element/{id}/text"), None)
                .await
            {
                Ok(v) => return v.as_str().unwrap_or_default().to_owned(),
                Err(e) => last = e,
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("text of {css}: {last}");
    }

    pub async fn css_value(&self, css: &str, property: &str) -> String {
        let id = self.find(css).await;
        self.cmd(
            reqwest::Method::GET,
            &format!("/element/{id}/css/{property}"),
            None,
        )
        .await
        .as_str()
        .unwrap()
        .to_owned()
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{id}/clear"),
            Some(json!({})),
        )
        .await;
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    pub async fn click(&self, css: &str) {
        let id = self.find(css).await;
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{id}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// Sets a field's value as a date picker would (typing into
    /// `datetime-local` depends on the browser's locale).
    pub async fn set_value(&self, css: &str, value: &str) {
        let id = self.find(css).await;
        self.cmd(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({
                "script": "arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('change', {bubbles: true}));",
                "args": [{ ELEMENT: id }, value]
            })),
        )
        .await;
    }

    pub async fn attr(&self, css: &str, name: &str) -> Option<String> {
        let id = self.find(css).await;
        self.cmd(
            reqwest::Method::GET,
            &format!("/element/{id}/property/{name}"),
            None,
        )
        .await
        .as_str()
        .map(str::to_owned)
    }

    /// Runs `script` in the page; it calls `arguments[arguments.length - 1]`
    /// with its result.
    pub async fn execute_async(&self, script: &str) -> Value {
        self.cmd(
            reqwest::Method::POST,
            "/execute/async",
            Some(json!({ "script": script, "args": [] })),
        )
        .await
    }

    /// Presses a key (a WebDriver key code such as `\u{E004}`, Tab) on
    /// whatever has the focus.
    pub async fn press(&self, key: &str) {
        self.cmd(
            reqwest::Method::POST,
            "/actions",
            Some(json!({ "actions": [{
                "type": "key", "id": "keyboard",
                "actions": [{ "type": "keyDown", "value": key }, { "type": "keyUp", "value": key }]
            }]})),
        )
        .await;
    }

    /// Runs `script` in the page and returns its result.
    pub async fn execute(&self, script: &str) -> Value {
        self.cmd(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
        .await
    }

    /// Runs axe-core over the page against WCAG 2.1 A and AA and axe's best
    /// practices; fails listing every violation of serious or critical impact
    /// (those of lesser impact are printed).
    pub async fn check_accessibility(&self, what: &str) {
        let (serious, lesser) = self.axe_violations().await;
        let url = self.url().await;
        if !lesser.is_empty() {
            eprintln!(
                "accessibility notes on {what} ({url}):\n{}",
                lesser.join("\n")
            );
        }
        assert!(
            serious.is_empty(),
            "accessibility violations on {what} ({url}):\n{}",
            serious.join("\n")
        );
    }

    /// axe-core's violations on the page, one line each (rule, impact, help,
    /// the elements): those of serious or critical impact, then the others.
    pub async fn axe_violations(&self) -> (Vec<String>, Vec<String>) {
        // Let a page that is still loading (a form just submitted) settle.
        self.wait_loaded().await;
        // Injected through WebDriver, which the page's CSP does not govern.
        let loaded = self
            .execute(&format!(
                "if (!window.axe) {{ {} }} return typeof window.axe;",
                axe_source()
            ))
            .await;
        assert_eq!(loaded, "object", "axe-core did not load");
        let found = self
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, {
                   runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']},
                   resultTypes: ['violations']
                 }).then(r => done(r.violations.map(v => ({
                   id: v.id, impact: v.impact, help: v.help,
                   nodes: v.nodes.map(n => n.target.join(' '))
                 }))), e => done([{id: 'axe-error', impact: 'critical', help: String(e), nodes: []}]));",
            )
            .await;
        let (mut serious, mut lesser) = (Vec::new(), Vec::new());
        for v in found.as_array().unwrap() {
            let line = format!(
                "  {} ({}): {} — {}",
                v["id"].as_str().unwrap_or_default(),
                v["impact"].as_str().unwrap_or("?"),
                v["help"].as_str().unwrap_or_default(),
                v["nodes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            if matches!(v["impact"].as_str(), Some("serious" | "critical")) {
                serious.push(line);
            } else {
                lesser.push(line);
            }
        }
        (serious, lesser)
    }

    /// At a phone's width (390 CSS pixels) the page does not scroll
    /// sideways; fails naming the elements that stick out.
    pub async fn check_fits_phone(&self, what: &str) {
        if let Some(wide) = self.phone_overflow().await {
            panic!("{what} ({}) {wide}", self.url().await);
        }
    }

    /// Why the page scrolls sideways at a phone's width, if it does. The
    /// window narrows for the measurement and widens again after it.
    pub async fn phone_overflow(&self) -> Option<String> {
        self.wait_loaded().await;
        self.set_window(PHONE.0, PHONE.1).await;
        let got = self
            .execute(
                "const w = window.innerWidth;
                 const wide = [...document.querySelectorAll('body *')]
                   .filter(e => e.getBoundingClientRect().right > w + 1)
                   .filter(e => {
                     for (let p = e.parentElement; p && p !== document.body; p = p.parentElement) {
                       if (getComputedStyle(p).overflowX !== 'visible') return false;
                     }
                     return true;
                   })
                   .slice(0, 8)
                   .map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + (e.className ? '.' + String(e.className).replace(/ /g, '.') : ''));
                 return [w, document.documentElement.scrollWidth, wide];",
            )
            .await;
        self.set_window(DESKTOP.0, DESKTOP.1).await;
        let inner = got[0].as_i64().unwrap();
        let scroll = got[1].as_i64().unwrap();
        assert!(
            (PHONE.0 - 20..=PHONE.0).contains(&inner),
            "the window did not narrow to a phone's width: {inner}"
        );
        (scroll > inner).then(|| {
            format!(
                "scrolls sideways at {inner} px: {scroll} px wide; sticking out: {}",
                got[2]
            )
        })
    }

    /// Both checks, as every page of a journey gets them.
    pub async fn check_page(&self, what: &str) {
        self.check_accessibility(what).await;
        self.check_fits_phone(what).await;
    }

    async fn set_window(&self, width: i64, height: i64) {
        self.cmd(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({ "width": width, "height": height })),
        )
        .await;
        // The new viewport applies once the page has laid out again.
        for _ in 0..50 {
            let inner = self.execute("return window.innerWidth;").await;
            if inner.as_i64().is_some_and(|w| w <= width) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn wait_loaded(&self) {
        for _ in 0..50 {
            if let Ok(v) = self
                .try_cmd(
                    reqwest::Method::POST,
                    "/execute/sync",
                    Some(json!({ "script": "return document.readyState;", "args": [] })),
                )
                .await
                && v == "complete"
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn url(&self) -> String {
        self.cmd(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub async fn close(self) {
        let _ = self
            .http
            .delete(format!("{}/session/{}", self.base, self.session))
            .send()
            .await;
    }
}

pub async fn sign_in(b: &Browser, url: &str, username: &str, password: &str) {
    b.goto(&format!("{url}/login")).await;
    b.type_into("#username", username).await;
    b.type_into("#password", password).await;
    b.click("button[type=submit]").await;
    b.wait_url(|u| !u.ends_with("/login")).await;
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn sign_in_see_the_environment_and_role_navigation_then_sign_out(pool: PgPool) {
    add_user(&pool, "adam", &["admin"], "adam-long-password");
    add_user(&pool, "erin", &["engineer"], "erin-long-password");
    add_user(&pool, "audrey", &["auditor"], "audrey-long-password");
    let (_server, url) = start_server(&pool, "PRODUCTION");
    let b = Browser::start().await;

    // A wrong password: the form says so and keeps the username.
    b.goto(&format!("{url}/login")).await;
    b.check_page("the login page").await;
    b.type_into("#username", "erin").await;
    b.type_into("#password", "not-her-password").await;
    b.click("button[type=submit]").await;
    assert_eq!(
        b.text("#login-error").await,
        "Invalid username or password."
    );
    b.check_page("the login page after a wrong password").await;

    // The engineer: environment label in red, no admin or audit navigation.
    sign_in(&b, &url, "erin", "erin-long-password").await;
    assert_eq!(b.url().await, format!("{url}/"));
    assert_eq!(b.text("#env-label").await, "PRODUCTION");
    assert_eq!(
        b.css_value("#env-label", "background-color").await,
        "rgba(179, 38, 30, 1)"
    );
    assert_eq!(b.text("#signed-in-user").await, "erin");
    assert_eq!(
        b.texts("nav a").await,
        vec![
            "Dashboard",
            "Changes",
            "Releases",
            "Calendar",
            "Deployments",
            "Freezes",
            "Metrics",
            "Standard changes"
        ]
    );
    b.check_page("the engineer's dashboard").await;
    // The first Tab reaches the skip link, shown; it leads to the content.
    b.press(TAB).await;
    assert_eq!(
        b.execute("const a = document.activeElement; return [a.className, a.getBoundingClientRect().top >= 0];")
            .await,
        json!(["skip-link", true])
    );
    b.press(ENTER).await;
    assert_eq!(b.execute("return document.activeElement.id;").await, "main");
    // Pages refused or missing are pages in the layout too.
    b.goto(&format!("{url}/admin/users")).await;
    b.check_page("the 403 page").await;
    b.goto(&format!("{url}/changes/{}", uuid::Uuid::new_v4()))
        .await;
    b.check_page("the 404 page").await;
    b.click("#logout").await;
    b.wait_url(|u| u.ends_with("/login")).await;
    // Signed out: the dashboard sends back to the login page.
    b.goto(&format!("{url}/")).await;
    b.wait_url(|u| u.contains("/login?next=")).await;

    // The auditor sees the audit trail, which verifies.
    sign_in(&b, &url, "audrey", "audrey-long-password").await;
    assert_eq!(
        b.texts("nav a").await,
        vec![
            "Dashboard",
            "Changes",
            "Releases",
            "Calendar",
            "Deployments",
            "Freezes",
            "Metrics",
            "Exceptions",
            "Audit trail"
        ]
    );
    b.check_page("the auditor's dashboard").await;
    b.click("nav a[href='/audit']").await;
    b.wait_url(|u| u.ends_with("/audit")).await;
    assert!(
        b.text("#chain-status")
            .await
            .starts_with("The chain verifies")
    );
    assert!(b.count("#audit-events tbody tr").await >= 4);
    b.check_page("the audit trail").await;
    // Filtered without JavaScript's help: a plain GET form.
    b.set_value("#outcome", "refused").await;
    b.click("#apply-filters").await;
    b.wait_url(|u| u.contains("outcome=refused")).await;
    assert_eq!(
        b.text("#audit-scope").await,
        "Events that record a refusal, newest first."
    );
    assert_eq!(b.count("#audit-downloads a").await, 4);
    b.check_page("the audit trail, refusals only").await;
    // A filter it cannot read comes back with the message beside its field.
    b.type_into("#change", "banana").await;
    b.click("#apply-filters").await;
    b.wait_url(|u| u.contains("change=banana")).await;
    assert!(b.text("#change-error").await.contains("CHG-42"));
    b.check_page("the audit trail with a filter in error").await;
    b.click("#evidence-link").await;
    b.wait_url(|u| u.ends_with("/audit/evidence")).await;
    b.check_page("the evidence pack's form").await;
    b.click("#logout").await;
    b.wait_url(|u| u.ends_with("/login")).await;

    // The admin sees Users and can open the user list.
    sign_in(&b, &url, "adam", "adam-long-password").await;
    assert_eq!(
        b.texts("nav a").await,
        vec![
            "Dashboard",
            "Changes",
            "Releases",
            "Calendar",
            "Deployments",
            "Freezes",
            "Metrics",
            "Standard changes",
            "Exceptions",
            "Quorum",
            "Environments",
            "Maintenance",
            "Users",
            "Audit trail"
        ]
    );
    b.check_page("the administrator's dashboard").await;
    b.click("nav a[href='/admin/users']").await;
    b.wait_url(|u| u.ends_with("/admin/users")).await;
    assert_eq!(b.count("#users tbody tr").await, 3);
    b.check_page("the user list").await;
    // A new account without a username: the error is tied to its field.
    b.click("#new-user-form button[type=submit]").await;
    b.find("#username-error").await;
    assert_eq!(
        b.attr("#username", "ariaInvalid").await.as_deref(),
        Some("true")
    );
    b.check_page("the new account form with errors").await;
    b.click("#users a[href^='/admin/users/']").await;
    b.wait_url(|u| u.contains("/admin/users/")).await;
    b.find("#user-roles").await;
    b.check_page("a user's page").await;
    b.click("nav a[href='/admin/quorum']").await;
    b.wait_url(|u| u.ends_with("/admin/quorum")).await;
    b.check_page("the quorum policy").await;
    // Freezes, with one on PROD to show, and the environments.
    sqlx::query(
        "INSERT INTO freezes (id, starts_at, ends_at, reason, environments, created_by, created_at)
         SELECT gen_random_uuid(), now() - interval '1 minute', now() + interval '2 hours',
                'Year-end trading freeze', '{prod}', id, now() FROM users WHERE username = 'adam'",
    )
    .execute(&pool)
    .await
    .unwrap();
    b.click("nav a[href='/freezes']").await;
    b.wait_url(|u| u.ends_with("/freezes")).await;
    assert_eq!(b.count("#freezes-in-force tbody tr").await, 1);
    b.check_page("the freezes").await;
    b.click("#freeze-form button[type=submit]").await;
    b.find("#ends_at-error").await;
    b.check_page("the freeze form with errors").await;
    b.click("nav a[href='/admin/environments']").await;
    b.wait_url(|u| u.ends_with("/admin/environments")).await;
    assert_eq!(b.count("#environments tbody tr").await, 4);
    b.check_page("the environments").await;
    // Exceptions, with a deployment nobody authorized to resolve.
    sqlx::query(
        "INSERT INTO observed_deployments (id, environment, service, artifact_digest, observed_at,
             reported_by, reported_at, finding)
         SELECT gen_random_uuid(), 'prod', 'billing', 'sha256:' || repeat('c', 64), now(), id, now(), true
           FROM users WHERE username = 'adam'",
    )
    .execute(&pool)
    .await
    .unwrap();
    b.click("nav a[href='/exceptions']").await;
    b.wait_url(|u| u.ends_with("/exceptions")).await;
    assert_eq!(b.count("#findings-list tbody tr").await, 1);
    b.check_page("the exceptions").await;
    b.click("#findings-list button[type=submit]").await;
    b.find("#findings-list .field-error").await;
    b.check_page("a finding's resolution with an error").await;
    b.click("nav a[href='/audit']").await;
    b.wait_url(|u| u.ends_with("/audit")).await;
    b.check_page("the audit trail as an administrator").await;
    b.click("#logout").await;
    b.wait_url(|u| u.ends_with("/login")).await;
    b.close().await;
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn an_engineer_files_fixes_submits_finds_and_revises_a_change(pool: PgPool) {
    add_user(&pool, "erin", &["engineer"], "erin-long-password");
    let (_server, url) = start_server(&pool, "STAGING");
    let b = Browser::start().await;
    sign_in(&b, &url, "erin", "erin-long-password").await;
    b.click("a[href='/changes/new']").await;
    b.wait_url(|u| u.ends_with("/changes/new")).await;
    b.check_page("the new change form").await;

    // Saved empty: a summary on top names each field in error and links to
    // it, and takes the focus; each field points at its message.
    b.click("#save").await;
    b.find("#error-summary").await;
    let summary = b.text("#error-summary").await;
    assert!(
        summary.contains("Impact") && summary.contains("Likelihood"),
        "{summary}"
    );
    assert!(b.count("#error-summary a[href='#impact']").await == 1);
    assert!(b.count("#error-summary a[href='#likelihood']").await == 1);
    let mut focused = Value::Null;
    for _ in 0..50 {
        focused = b.execute("return document.activeElement.id;").await;
        if focused == "error-summary" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(focused, "error-summary");
    for field in ["impact", "likelihood"] {
        assert_eq!(
            b.attr(&format!("#{field}"), "ariaInvalid").await.as_deref(),
            Some("true")
        );
        assert_eq!(
            b.execute(&format!(
                "return document.getElementById('{field}').getAttribute('aria-describedby');"
            ))
            .await,
            format!("{field}-error")
        );
    }
    b.check_page("the change form re-shown with errors").await;
    // The summary's link takes the keyboard to the field.
    b.click("#error-summary a[href='#impact']").await;
    assert_eq!(
        b.execute("return document.activeElement.id;").await,
        "impact"
    );

    b.type_into("#title", "Rotate the quokka certificates")
        .await;
    b.type_into(
        "#description",
        "Replace the expiring certificates on the edge.",
    )
    .await;
    b.type_into("#justification", "They expire next week.")
        .await;
    b.type_into("#services", "edge-proxy").await;
    b.click("input[name=environments][value=STAGE]").await;
    b.click("input[name=environments][value=PROD]").await;
    b.type_into("#implementation_plan", "Swap them with the pipeline.")
        .await;
    b.type_into("#test_plan", "TLS checks on STAGE.").await;
    b.type_into("#rollback_plan", "Put the old ones back.")
        .await;
    // The mistake: the window ends before it starts.
    b.set_value("#window_start", "2026-12-01T10:00").await;
    b.set_value("#window_end", "2026-12-01T09:00").await;
    b.click("#impact option[value='2']").await;
    b.click("#likelihood option[value='4']").await;
    b.click("input[name=customer_facing]").await;
    // The risk preview follows the answers (computed by the server).
    let mut level = String::new();
    for _ in 0..50 {
        if b.count("#risk-level").await > 0 {
            level = b.text("#risk-level").await;
            if level == "High" {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(level, "High");
    b.click("#save").await;

    // The error beside the field, the rest kept.
    assert_eq!(
        b.text("#window_end-error").await,
        "The window must end after it starts."
    );
    assert_eq!(
        b.attr("#title", "value").await.as_deref(),
        Some("Rotate the quokka certificates")
    );
    assert_eq!(
        b.attr("#rollback_plan", "value").await.as_deref(),
        Some("Put the old ones back.")
    );
    b.check_page("the change form with a wrong window").await;
    b.set_value("#window_end", "2026-12-01T11:00").await;
    b.click("#save").await;
    b.wait_url(|u| u.contains("/changes/") && !u.ends_with("/new"))
        .await;
    assert_eq!(b.text("#change-state").await, "Draft");
    let key = b.text("#change-key").await;
    b.check_page("a draft change").await;

    b.click("#submit-change").await;
    for _ in 0..50 {
        if b.text("#change-state").await == "Submitted" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(b.text("#change-state").await, "Submitted");
    assert_eq!(b.text("#change-revision").await, "revision 1");
    b.check_page("a submitted change").await;

    // Found in the list by a word of its title.
    b.goto(&format!("{url}/changes")).await;
    b.type_into("#search", "quokka").await;
    b.click("#apply-filters").await;
    b.wait_url(|u| u.contains("q=quokka")).await;
    assert_eq!(
        b.texts("#changes tbody td:first-child a").await,
        vec![key.clone()]
    );
    b.check_page("the change list").await;
    b.click("#changes tbody td:first-child a").await;
    b.wait_url(|u| !u.contains("q=quokka")).await;

    // An edit after submission is a new revision, with its diff on the page.
    b.click("#edit-change").await;
    b.wait_url(|u| u.ends_with("/edit")).await;
    b.check_page("the edit form").await;
    b.type_into("#title", "Rotate the quokka certificates on the edge")
        .await;
    b.click("#save").await;
    b.wait_url(|u| !u.ends_with("/edit")).await;
    assert_eq!(b.text("#change-revision").await, "revision 2");
    let diff = b.text("#revision-2").await;
    assert!(
        diff.contains("Rotate the quokka certificates on the edge"),
        "{diff}"
    );
    b.check_page("a change with a revision diff").await;

    b.close().await;
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn security_assesses_two_cab_members_approve_and_the_author_cannot_vote(pool: PgPool) {
    add_user(
        &pool,
        "erin",
        &["engineer", "cab_member"],
        "erin-long-password",
    );
    add_user(&pool, "sam", &["security_reviewer"], "sam-long-password");
    add_user(&pool, "carol", &["cab_member"], "carol-long-password");
    add_user(&pool, "carl", &["cab_member"], "carl-long-password");
    add_user(&pool, "rita", &["release_manager"], "rita-long-password");
    let (_server, url) = start_server(&pool, "STAGING");
    // Erin files and submits a high-risk change through the API.
    let http = reqwest::Client::new();
    let token: Value = http
        .post(format!("{url}/api/v1/auth/token"))
        .json(&json!({"username": "erin", "password": "erin-long-password"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap().to_owned();
    let mut body = crate::changes::complete_change("Rotate the edge certificates");
    body["risk"] = json!({"impact": 3, "likelihood": 3});
    let change: Value = http
        .post(format!("{url}/api/v1/changes"))
        .bearer_auth(&token)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = change["id"].as_str().unwrap().to_owned();
    let submitted = http
        .post(format!("{url}/api/v1/changes/{id}/submit"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(submitted.status(), 200);

    let b = Browser::start().await;
    // The security reviewer finds it in the queue and assesses it.
    sign_in(&b, &url, "sam", "sam-long-password").await;
    b.check_page("the security reviewer's dashboard").await;
    b.click("nav a[href='/assessments']").await;
    b.wait_url(|u| u.ends_with("/assessments")).await;
    b.check_page("the assessment queue").await;
    b.click(&format!("#queue a[href='/changes/{id}']")).await;
    b.wait_url(|u| u.contains(&id)).await;
    b.check_page("a change awaiting assessment").await;
    b.click("#start-assessment").await;
    b.wait_url(|u| u.ends_with("/assessment")).await;
    b.check_page("the assessment form").await;
    b.click("#save-assessment").await;
    b.find("#error-summary").await;
    b.check_page("the assessment form with errors").await;
    b.type_into("#security_implications", "Touches TLS termination.")
        .await;
    b.click("input[name=sast_required]").await;
    b.type_into("#sast_evidence", "https://ci.example.com/sast/9")
        .await;
    b.type_into("#residual_risk", "Low with pinning.").await;
    b.click("#decision option[value='accept_with_conditions']")
        .await;
    b.type_into("#conditions", "Watch handshake errors for an hour")
        .await;
    b.click("#save-assessment").await;
    b.wait_url(|u| u.ends_with("#decision")).await;
    assert_eq!(b.text("#change-state").await, "In CAB review");
    assert!(
        b.text("#conditions")
            .await
            .contains("Watch handshake errors")
    );
    b.check_page("an assessed change").await;
    b.click("#logout").await;
    b.wait_url(|u| u.ends_with("/login")).await;

    // Two CAB members approve.
    for (who, pw) in [
        ("carol", "carol-long-password"),
        ("carl", "carl-long-password"),
    ] {
        sign_in(&b, &url, who, pw).await;
        b.check_page("a CAB member's dashboard").await;
        b.click("nav a[href='/cab']").await;
        b.wait_url(|u| u.ends_with("/cab")).await;
        b.check_page("the CAB queue").await;
        b.click("a[href='/cab/agenda']").await;
        b.wait_url(|u| u.ends_with("/cab/agenda")).await;
        b.check_page("the CAB agenda").await;
        b.click(&format!("#queue a[href='/changes/{id}']")).await;
        b.wait_url(|u| u.contains(&id)).await;
        b.check_page("a change with a vote form").await;
        b.click("#cast-vote").await;
        b.wait_url(|u| u.ends_with("#decision")).await;
        b.click("#logout").await;
        b.wait_url(|u| u.ends_with("/login")).await;
    }

    // The author, though a CAB member, finds no vote form, and a crafted POST is refused.
    sign_in(&b, &url, "erin", "erin-long-password").await;
    b.goto(&format!("{url}/changes/{id}")).await;
    assert_eq!(b.text("#change-state").await, "Approved");
    assert_eq!(b.count("#vote-form").await, 0);
    assert_eq!(b.count("#approval-trail tbody tr").await, 3);
    b.check_page("an approved change").await;
    let status = b
        .execute_async(&format!(
            "const done = arguments[arguments.length - 1];
             const body = new URLSearchParams({{_csrf: document.querySelector('input[name=_csrf]').value, vote: 'approve', revision: '1'}});
             fetch('/changes/{id}/votes', {{method: 'POST', body}}).then(r => r.text().then(t => done([r.status, t])));"
        ))
        .await;
    assert_eq!(status[0], 403);
    assert!(status[1].as_str().unwrap().contains("cannot vote on it"));

    // Standard changes, which a CAB member may propose: the list, a proposal with errors, then a proposal.
    b.click("nav a[href='/templates']").await;
    b.wait_url(|u| u.ends_with("/templates")).await;
    b.check_page("the standard changes").await;
    b.click("#propose-template button[type=submit]").await;
    b.find("#error-summary").await;
    b.check_page("a template proposal with errors").await;
    b.type_into("#name", "Renew a certificate").await;
    b.type_into("#title", "Renew the certificate of a service")
        .await;
    b.type_into("#description", "Replace a certificate before it expires.")
        .await;
    b.type_into("#implementation_plan", "Run the renewal pipeline.")
        .await;
    b.type_into("#test_plan", "TLS checks.").await;
    b.type_into("#rollback_plan", "Put the old one back.").await;
    b.type_into("#services", "edge-proxy").await;
    b.click("#environments").await;
    b.type_into("#impact", "1").await;
    b.type_into("#likelihood", "1").await;
    b.click("#propose-template button[type=submit]").await;
    b.wait_url(|u| u.contains("/templates/")).await;
    b.find("#template-state").await;
    b.check_page("a proposed template").await;
    b.click("#logout").await;
    b.wait_url(|u| u.ends_with("/login")).await;

    // The release manager sees the approved change.
    sign_in(&b, &url, "rita", "rita-long-password").await;
    b.check_page("the release manager's dashboard").await;
    b.goto(&format!("{url}/changes/{id}")).await;
    b.check_page("an approved change as the release manager")
        .await;
    b.close().await;
}

/// The checks themselves can fail: a picture without a text alternative, and
/// a page wider than a phone, are caught.
#[tokio::test]
async fn the_page_checks_catch_a_missing_alt_text_and_a_page_too_wide_for_a_phone() {
    let b = Browser::start().await;
    let page = |body: &str| {
        let html = format!(
            "<!doctype html><html lang=\"en\"><head><title>Check</title></head><body><main><h1>Check</h1>{body}</main></body></html>"
        );
        let encoded: String = html
            .bytes()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    char::from(c).to_string()
                } else {
                    format!("%{c:02X}")
                }
            })
            .collect();
        format!("data:text/html;charset=utf-8,{encoded}")
    };
    b.goto(&page("<p>Nothing wrong here.</p>")).await;
    b.check_page("a page with nothing wrong").await;

    b.goto(&page(
        "<img src=\"data:image/gif;base64,R0lGODlhAQABAAAAACw=\"><div style=\"width: 800px\">Wide</div>",
    ))
    .await;
    let (serious, _) = b.axe_violations().await;
    assert!(
        serious.iter().any(|v| v.contains("image-alt (critical)")),
        "{serious:?}"
    );
    let wide = b.phone_overflow().await.expect("the page is too wide");
    assert!(wide.contains("div"), "{wide}");
    b.close().await;
}
