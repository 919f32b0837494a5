//! The `cab` binary under stress, as an operator runs it: slow and silent
//! clients, bodies that never arrive, more connections than it may serve,
//! and a shutdown while requests are in flight. Each test starts `cab serve`
//! with short timeouts and talks to it over loopback only.

use std::net::SocketAddr;
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::cli::{ServerProcess, start_server_with};

fn address(url: &str) -> SocketAddr {
    url.trim_start_matches("http://").parse().unwrap()
}

/// The server's open file descriptors.
fn descriptors(server: &ServerProcess) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", server.0.id()))
        .unwrap()
        .count()
}

/// SIGTERM, without waiting for the process to end.
fn send_sigterm(server: &ServerProcess) {
    let sent = Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

async fn wait_for_exit(server: &mut ServerProcess, limit: Duration) -> Option<ExitStatus> {
    let until = Instant::now() + limit;
    loop {
        if let Some(status) = server.0.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() >= until {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Everything the server sends until it closes the connection, and whether
/// it did close it within `limit`.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, bool) {
    let mut got = Vec::new();
    let closed = tokio::time::timeout(limit, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    (String::from_utf8_lossy(&got).into_owned(), closed)
}

/// A connection that has sent `bytes`.
async fn sent(addr: SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    stream
}

/// `GET path` on a connection of its own; the answer and whether the
/// server closed the connection after it.
async fn get(addr: SocketAddr, path: &str) -> (String, bool) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: cab\r\nConnection: close\r\n\r\n");
    let mut stream = sent(addr, request.as_bytes()).await;
    read_until_closed(&mut stream, Duration::from_secs(5)).await
}

fn post_head(path: &str, content_type: &str, length: usize, extra: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: cab\r\nContent-Type: {content_type}\r\n\
         Content-Length: {length}\r\n{extra}\r\n"
    )
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn slow_and_silent_clients_are_closed_and_their_descriptors_released(pool: PgPool) {
    let (server, url) = start_server_with(
        &pool,
        &[
            ("CAB_HEADER_TIMEOUT_SECONDS", "1"),
            ("CAB_REQUEST_TIMEOUT_SECONDS", "3"),
        ],
    );
    let addr = address(&url);
    assert!(get(addr, "/readyz").await.0.starts_with("HTTP/1.1 200"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = descriptors(&server);

    // 50 clients send a request line, then one header byte every 500 ms;
    // 10 more connect and send nothing at all.
    let mut clients = JoinSet::new();
    for i in 0..60 {
        clients.spawn(async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            let opened = Instant::now();
            let dribbles = i % 6 != 0;
            if dribbles {
                stream
                    .write_all(b"GET /healthz HTTP/1.1\r\nHost: cab\r\nX-Slow: ")
                    .await
                    .unwrap();
            }
            while opened.elapsed() < Duration::from_secs(8) {
                let mut buf = [0u8; 1024];
                match tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buf)).await
                {
                    Ok(Ok(0) | Err(_)) => return Some((opened.elapsed(), String::new())),
                    Ok(Ok(n)) => {
                        let mut answer = String::from_utf8_lossy(&buf[..n]).into_owned();
                        let (rest, closed) =
                            read_until_closed(&mut stream, Duration::from_secs(2)).await;
                        answer.push_str(&rest);
                        return closed.then(|| (opened.elapsed(), answer));
                    }
                    Err(_) => {}
                }
                if dribbles && stream.write_all(b"a").await.is_err() {
                    return Some((opened.elapsed(), String::new()));
                }
            }
            None
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let held = descriptors(&server);

    let mut closed_after = Vec::new();
    while let Some(outcome) = clients.join_next().await {
        let (after, answer) = outcome
            .unwrap()
            .expect("a slow client kept its connection for 8 s (header timeout: 1 s)");
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
            "{answer}"
        );
        closed_after.push(after);
    }
    let slowest = closed_after.iter().max().unwrap();
    assert!(
        *slowest < Duration::from_secs(3),
        "closed within the header timeout and a margin: {slowest:?}"
    );
    assert!(
        held >= before + 40,
        "the clients held descriptors while connected: {before} before, {held} with them"
    );
    let mut after = descriptors(&server);
    for _ in 0..20 {
        if after <= before + 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = descriptors(&server);
    }
    assert!(
        after <= before + 2,
        "descriptors back to where they were: {before} before, {held} held, {after} after"
    );
    // And the server still answers.
    assert!(get(addr, "/healthz").await.0.starts_with("HTTP/1.1 200"));
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_body_that_never_arrives_is_answered_408_and_closed(pool: PgPool) {
    let (_server, url) = start_server_with(
        &pool,
        &[
            ("CAB_BODY_TIMEOUT_SECONDS", "1"),
            ("CAB_REQUEST_TIMEOUT_SECONDS", "5"),
        ],
    );
    let addr = address(&url);

    // The API: a sign-in that promises 100 bytes and sends 12.
    let head = post_head("/api/v1/auth/token", "application/json", 100, "");
    let mut api = sent(addr, format!("{head}{{\"username\":").as_bytes()).await;
    let started = Instant::now();
    let (answer, closed) = read_until_closed(&mut api, Duration::from_secs(5)).await;
    assert!(closed, "still open 5 s on: {answer}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let lower = answer.to_ascii_lowercase();
    assert!(lower.contains("connection: close"), "{answer}");
    assert!(
        lower.contains("content-type: application/problem+json"),
        "{answer}"
    );
    assert!(answer.contains(r#""code":"request_timeout""#), "{answer}");
    assert!(lower.contains("x-request-id:"), "{answer}");

    // A page: the sign-in form, whose body the CSRF check reads.
    let head = post_head(
        "/login",
        "application/x-www-form-urlencoded",
        100,
        &format!("Cookie: {}=abc\r\n", cab_server::auth::LOGIN_COOKIE),
    );
    let mut page = sent(addr, format!("{head}username=erin").as_bytes()).await;
    let (answer, closed) = read_until_closed(&mut page, Duration::from_secs(5)).await;
    assert!(closed, "still open 5 s on: {answer}");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let lower = answer.to_ascii_lowercase();
    assert!(lower.contains("content-type: text/html"), "{answer}");
    assert!(lower.contains("connection: close"), "{answer}");
    assert!(answer.contains("Request timed out"), "{answer}");
    assert!(lower.contains("content-security-policy:"), "{answer}");
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn a_request_slower_than_the_request_timeout_is_answered_408(pool: PgPool) {
    let (_server, url) = start_server_with(
        &pool,
        &[
            ("CAB_BODY_TIMEOUT_SECONDS", "30"),
            ("CAB_REQUEST_TIMEOUT_SECONDS", "1"),
        ],
    );
    let addr = address(&url);
    // A body that keeps coming, one byte every 200 ms: never idle, never done.
    let head = post_head("/api/v1/auth/token", "application/json", 1000, "");
    let mut stream = sent(addr, head.as_bytes()).await;
    let started = Instant::now();
    let mut answer = Vec::new();
    while started.elapsed() < Duration::from_secs(5) {
        let mut buf = [0u8; 1024];
        match tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
            Err(_) => {
                let _ = stream.write_all(b" ").await;
            }
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "answered and closed after the 1 s request timeout: {:?}",
        started.elapsed()
    );
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn connections_beyond_the_limit_are_answered_503_until_one_ends(pool: PgPool) {
    let (_server, url) = start_server_with(
        &pool,
        &[
            ("CAB_MAX_CONNECTIONS", "4"),
            ("CAB_HEADER_TIMEOUT_SECONDS", "10"),
        ],
    );
    let addr = address(&url);
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    let (answer, closed) = get(addr, "/healthz").await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    let lower = answer.to_ascii_lowercase();
    assert!(lower.contains("retry-after: 1"), "{answer}");
    assert!(lower.contains("connection: close"), "{answer}");
    assert!(
        closed && started.elapsed() < Duration::from_secs(1),
        "answered at once"
    );

    // One of the four leaves: the next connection is served.
    drop(held.pop());
    let mut served = false;
    for _ in 0..20 {
        if get(addr, "/healthz").await.0.starts_with("HTTP/1.1 200") {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served, "a connection is served once one of the four ends");
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn sigterm_lets_the_request_in_flight_finish_and_exits_by_the_deadline(pool: PgPool) {
    let (mut server, url) = start_server_with(
        &pool,
        &[
            ("CAB_SHUTDOWN_SECONDS", "2"),
            ("CAB_HEADER_TIMEOUT_SECONDS", "30"),
            ("CAB_BODY_TIMEOUT_SECONDS", "30"),
            ("CAB_REQUEST_TIMEOUT_SECONDS", "30"),
        ],
    );
    let addr = address(&url);
    // Half a request's headers, then nothing.
    let mut stalled = sent(addr, b"GET /healthz HTTP/1.1\r\nHost: cab\r\n").await;
    // A sign-in whose body is half sent; the rest comes after SIGTERM.
    let body = r#"{"username":"nobody","password":"not-the-password"}"#;
    let head = post_head("/api/v1/auth/token", "application/json", body.len(), "");
    let mut in_flight = sent(addr, format!("{head}{}", &body[..10]).as_bytes()).await;
    // A request whose body never comes.
    let head = post_head("/api/v1/auth/token", "application/json", 100, "");
    let mut stuck = sent(addr, format!("{head}{{").as_bytes()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    send_sigterm(&server);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no new connection is accepted once shutting down"
    );
    let (_, closed) = read_until_closed(&mut stalled, Duration::from_secs(1)).await;
    assert!(
        closed,
        "a connection without a whole request is closed at once"
    );

    in_flight.write_all(&body.as_bytes()[10..]).await.unwrap();
    let (answer, closed) = read_until_closed(&mut in_flight, Duration::from_secs(3)).await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(closed, "closed after its answer");

    let status = wait_for_exit(&mut server, Duration::from_secs(6))
        .await
        .expect("still running 6 s after SIGTERM, with a 2 s shutdown deadline");
    let took = started.elapsed();
    assert!(status.success(), "{status}");
    assert!(
        took >= Duration::from_millis(1500),
        "the stuck request had the deadline to finish: exited after {took:?}"
    );
    let (_, closed) = read_until_closed(&mut stuck, Duration::from_secs(1)).await;
    assert!(closed, "the stuck request's connection was cut");

    // The sign-in was recorded with the client's address.
    let from_loopback: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE client_addr = '127.0.0.1'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(
        from_loopback > 0,
        "the peer address reaches the audit trail"
    );
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn sigterm_with_nothing_in_flight_exits_at_once(pool: PgPool) {
    let (mut server, url) = start_server_with(&pool, &[("CAB_SHUTDOWN_SECONDS", "20")]);
    // A keep-alive connection, idle after its answer.
    let client = reqwest::Client::new();
    let health = client.get(format!("{url}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let started = Instant::now();
    send_sigterm(&server);
    let status = wait_for_exit(&mut server, Duration::from_secs(5))
        .await
        .expect("still running 5 s after SIGTERM with nothing in flight");
    assert!(status.success(), "{status}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}
