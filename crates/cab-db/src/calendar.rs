//! The change calendar's reads (change windows, deployments and freezes in a
//! period), what the conflict check needs to know of other changes, the
//! services' maintenance periods, and people's calendar feeds.

use chrono::{DateTime, NaiveTime, Utc};
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

/// The states in which a change holds its planned window: submitted and not
/// yet closed, deployed or withdrawn. Drafts hold nothing yet.
pub const BOOKING_STATES: &[&str] = &[
    "submitted",
    "in_assessment",
    "in_cab_review",
    "changes_requested",
    "approved",
    "implementing",
    "implementation_failed",
];

/// What the calendar may be narrowed to. Every field is optional; the
/// environment is the change's word for it (`PROD`), the state and risk
/// their stored words.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CalendarFilter {
    pub service: Option<String>,
    pub environment: Option<String>,
    pub risk: Option<String>,
    pub state: Option<String>,
}

/// A change's planned window on the calendar.
#[derive(Debug, Clone)]
pub struct WindowRow {
    pub id: Uuid,
    pub number: i64,
    pub title: String,
    pub state: String,
    /// How a closed change ended.
    pub close_code: Option<String>,
    pub risk_level: String,
    pub revision: i32,
    pub services: Vec<String>,
    pub environments: Vec<String>,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The windows that overlap [from, to), earliest first, at most `limit`
/// (drafts are nobody's plan yet and are left out). Rejected, withdrawn and
/// cancelled changes only with `include_closed`. The period test matches
/// the `changes_window_range` index.
pub async fn windows(
    conn: &mut PgConnection,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    filter: &CalendarFilter,
    include_closed: bool,
    limit: i64,
) -> sqlx::Result<Vec<WindowRow>> {
    sqlx::query_as!(
        WindowRow,
        r#"SELECT id, number, title, state, close_code, risk_level, revision, services, environments,
                  window_start AS "window_start!", window_end AS "window_end!", updated_at
           FROM changes
           WHERE window_start IS NOT NULL AND window_end IS NOT NULL AND window_end > window_start
             AND tstzrange(window_start, window_end, '[)') && tstzrange($1, $2, '[)')
             AND state <> 'draft'
             AND ($3::text IS NULL OR $3 = ANY(services))
             AND ($4::text IS NULL OR $4 = ANY(environments))
             AND ($5::text IS NULL OR risk_level = $5)
             AND ($6::text IS NULL OR state = $6)
             AND ($7 OR state NOT IN ('rejected', 'withdrawn', 'cancelled'))
           ORDER BY window_start, number
           LIMIT $8"#,
        from,
        to,
        filter.service.as_deref(),
        filter.environment.as_deref(),
        filter.risk.as_deref(),
        filter.state.as_deref(),
        include_closed,
        limit
    )
    .fetch_all(&mut *conn)
    .await
}

/// The changes a proposed window could collide with: those holding a window
/// that overlaps [from, to) and share one of `services`, or (when
/// `production` names the production environments' words) that target
/// production. At most `limit`, earliest first.
pub async fn booked(
    conn: &mut PgConnection,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    services: &[String],
    production: &[String],
    limit: i64,
) -> sqlx::Result<Vec<WindowRow>> {
    let states: Vec<String> = BOOKING_STATES.iter().map(|s| (*s).to_owned()).collect();
    sqlx::query_as!(
        WindowRow,
        r#"SELECT id, number, title, state, close_code, risk_level, revision, services, environments,
                  window_start AS "window_start!", window_end AS "window_end!", updated_at
           FROM changes
           WHERE window_start IS NOT NULL AND window_end IS NOT NULL AND window_end > window_start
             AND tstzrange(window_start, window_end, '[)') && tstzrange($1, $2, '[)')
             AND state = ANY($3)
             AND (services && $4 OR environments && $5)
           ORDER BY window_start, number
           LIMIT $6"#,
        from,
        to,
        &states,
        services,
        production,
        limit
    )
    .fetch_all(&mut *conn)
    .await
}

/// A deployment on the calendar: from its start to its end (or its start,
/// while it runs).
#[derive(Debug, Clone)]
pub struct DeploymentSpan {
    pub id: Uuid,
    pub number: i64,
    pub change_number: i64,
    pub change_title: String,
    pub environment: String,
    pub state: String,
    pub services: Vec<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// The deployments that started in [from, to), earliest first, at most
/// `limit`. The environment filter is an environment's key (`prod`).
pub async fn deployments(
    conn: &mut PgConnection,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    filter: &CalendarFilter,
    limit: i64,
) -> sqlx::Result<Vec<DeploymentSpan>> {
    sqlx::query_as!(
        DeploymentSpan,
        r#"SELECT d.id, d.number, c.number AS change_number, c.title AS change_title, d.environment,
                  d.state, d.services, d.started_at AS "started_at!", d.finished_at
           FROM deployments d JOIN changes c ON c.id = d.change_id
           WHERE d.started_at >= $1 AND d.started_at < $2
             AND ($3::text IS NULL OR $3 = ANY(d.services))
             AND ($4::text IS NULL OR d.environment = lower($4))
             AND ($5::text IS NULL OR c.risk_level = $5)
             AND ($6::text IS NULL OR c.state = $6)
           ORDER BY d.started_at, d.number
           LIMIT $7"#,
        from,
        to,
        filter.service.as_deref(),
        filter.environment.as_deref(),
        filter.risk.as_deref(),
        filter.state.as_deref(),
        limit
    )
    .fetch_all(&mut *conn)
    .await
}

/// A freeze on the calendar.
#[derive(Debug, Clone)]
pub struct FreezeSpan {
    pub id: Uuid,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub reason: String,
    pub environments: Vec<String>,
    pub services: Vec<String>,
    pub lifted_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// The freezes in force at some point of [from, to) (a lifted freeze ends
/// when it was lifted; one lifted before it began never was), earliest
/// first.
pub async fn freezes(
    conn: &mut PgConnection,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> sqlx::Result<Vec<FreezeSpan>> {
    sqlx::query_as!(
        FreezeSpan,
        "SELECT id, starts_at, ends_at, reason, environments, services, lifted_at, created_at
         FROM freezes WHERE ends_at > $1 AND starts_at < $2
           AND (lifted_at IS NULL OR lifted_at > starts_at)
         ORDER BY starts_at, id",
        from,
        to
    )
    .fetch_all(&mut *conn)
    .await
}

/// A service's weekly maintenance period.
#[derive(Debug, Clone)]
pub struct MaintenanceRow {
    pub id: Uuid,
    pub service: String,
    /// 1 = Monday … 7 = Sunday.
    pub weekdays: Vec<i16>,
    pub starts: NaiveTime,
    pub minutes: i32,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

/// The maintenance periods, of `services` only when given, by service.
pub async fn maintenance_periods(
    conn: &mut PgConnection,
    services: Option<&[String]>,
) -> sqlx::Result<Vec<MaintenanceRow>> {
    sqlx::query_as!(
        MaintenanceRow,
        "SELECT m.id, m.service, m.weekdays, m.starts, m.minutes, u.username AS created_by, m.created_at
         FROM maintenance_periods m JOIN users u ON u.id = m.created_by
         WHERE $1::text[] IS NULL OR m.service = ANY($1)
         ORDER BY m.service, m.starts, m.id",
        services
    )
    .fetch_all(&mut *conn)
    .await
}

pub struct NewMaintenancePeriod<'a> {
    pub id: Uuid,
    pub service: &'a str,
    pub weekdays: &'a [i16],
    pub starts: NaiveTime,
    pub minutes: i32,
    pub by: Uuid,
    pub at: DateTime<Utc>,
}

pub async fn insert_maintenance_period(
    conn: &mut PgConnection,
    m: &NewMaintenancePeriod<'_>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO maintenance_periods (id, service, weekdays, starts, minutes, created_by, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        m.id,
        m.service,
        m.weekdays,
        m.starts,
        m.minutes,
        m.by,
        m.at
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Removes a maintenance period; the removed row, if there was one.
pub async fn delete_maintenance_period(
    conn: &mut PgConnection,
    id: Uuid,
) -> sqlx::Result<Option<(String, Vec<i16>, NaiveTime, i32)>> {
    let row = sqlx::query!(
        "DELETE FROM maintenance_periods WHERE id = $1 RETURNING service, weekdays, starts, minutes",
        id
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|r| (r.service, r.weekdays, r.starts, r.minutes)))
}

/// A person's calendar feed (never its secret: only its hash is stored).
#[derive(Debug, Clone)]
pub struct FeedRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub label: String,
    pub filters: Value,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

pub struct NewFeed<'a> {
    pub id: Uuid,
    pub user_id: Uuid,
    pub token_sha256: &'a [u8],
    pub label: &'a str,
    pub filters: &'a Value,
    pub at: DateTime<Utc>,
}

pub async fn insert_feed(conn: &mut PgConnection, f: &NewFeed<'_>) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO calendar_feeds (id, user_id, token_sha256, label, filters, created_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
        f.id,
        f.user_id,
        f.token_sha256,
        f.label,
        f.filters,
        f.at
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A person's feeds, newest first, revoked ones included.
pub async fn feeds_of(conn: &mut PgConnection, user_id: Uuid) -> sqlx::Result<Vec<FeedRow>> {
    sqlx::query_as!(
        FeedRow,
        "SELECT id, user_id, label, filters, created_at, last_used_at, revoked_at FROM calendar_feeds
         WHERE user_id = $1 ORDER BY created_at DESC, id",
        user_id
    )
    .fetch_all(&mut *conn)
    .await
}

/// The live feed whose secret hashes to `token_sha256`, if its owner's
/// account is active.
pub async fn live_feed(
    conn: &mut PgConnection,
    token_sha256: &[u8],
) -> sqlx::Result<Option<FeedRow>> {
    sqlx::query_as!(
        FeedRow,
        "SELECT f.id, f.user_id, f.label, f.filters, f.created_at, f.last_used_at, f.revoked_at
         FROM calendar_feeds f JOIN users u ON u.id = f.user_id
         WHERE f.token_sha256 = $1 AND f.revoked_at IS NULL AND u.disabled_at IS NULL",
        token_sha256
    )
    .fetch_optional(&mut *conn)
    .await
}

/// Notes that a feed was read, at most once in ten minutes, so a calendar
/// polling it does not write on every fetch.
pub async fn touch_feed(conn: &mut PgConnection, id: Uuid, at: DateTime<Utc>) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE calendar_feeds SET last_used_at = $2
         WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2::timestamptz - interval '10 minutes')",
        id,
        at
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Revokes one of a person's feeds; its label when it was live.
pub async fn revoke_feed(
    conn: &mut PgConnection,
    id: Uuid,
    user_id: Uuid,
    at: DateTime<Utc>,
) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar!(
        "UPDATE calendar_feeds SET revoked_at = $3
         WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL RETURNING label",
        id,
        user_id,
        at
    )
    .fetch_optional(&mut *conn)
    .await
}

/// The feed, whoever owns it.
pub async fn feed(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<FeedRow>> {
    sqlx::query_as!(
        FeedRow,
        "SELECT id, user_id, label, filters, created_at, last_used_at, revoked_at FROM calendar_feeds
         WHERE id = $1",
        id
    )
    .fetch_optional(&mut *conn)
    .await
}

/// The calendar conflicts one vote acknowledged, as kept with the vote.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AcknowledgedRow {
    pub voter_username: String,
    pub revision: i32,
    pub created_at: DateTime<Utc>,
    /// The conflicts as `calendar::conflict_json` wrote them: each with its
    /// sentence.
    pub acknowledged_conflicts: Value,
}

/// The votes on a change that acknowledged calendar conflicts, oldest
/// first; the approval trail shows what each member accepted.
pub async fn acknowledged_conflicts(
    conn: &mut PgConnection,
    change_id: Uuid,
) -> sqlx::Result<Vec<AcknowledgedRow>> {
    sqlx::query_as::<_, AcknowledgedRow>(
        "SELECT voter_username, revision, created_at, acknowledged_conflicts
         FROM change_votes
         WHERE change_id = $1 AND jsonb_typeof(acknowledged_conflicts) = 'array'
           AND jsonb_array_length(acknowledged_conflicts) > 0
         ORDER BY created_at, id",
    )
    .bind(change_id)
    .fetch_all(&mut *conn)
    .await
}
