//! The CAB queue as a set: every change awaiting a decision with what its
//! decision rests on, in two statements whatever the number of changes.
//!
//! The first reads the changes with their quorum policy, the current
//! assessment of their current revision and where its author stands now;
//! the second reads the current ballots of all of them with where each
//! voter stands now. Deciding what that means is the domain's
//! (`cab_domain::tally`).

use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::decisions::QueueRow;

/// A person as the store has them now: `None` when nobody has that id any
/// more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonNow {
    pub active: bool,
    pub roles: Vec<String>,
}

fn person(found: bool, active: bool, roles: Option<Vec<String>>) -> Option<PersonNow> {
    found.then(|| PersonNow {
        active,
        roles: roles.unwrap_or_default(),
    })
}

/// The current assessment of a change's current revision.
#[derive(Debug, Clone)]
pub struct QueueAssessment {
    pub assessor_id: Uuid,
    pub decision: String,
    pub assessed_level: String,
    pub assessor_now: Option<PersonNow>,
}

/// A current ballot on a change's current revision, oldest first.
#[derive(Debug, Clone)]
pub struct QueueBallot {
    pub voter_id: Uuid,
    pub choice: String,
    pub voter_now: Option<PersonNow>,
}

/// A change awaiting a decision and what its decision rests on.
#[derive(Debug, Clone)]
pub struct QueueFacts {
    pub row: QueueRow,
    /// The policy fixed at submission, if one was.
    pub quorum_policy: Option<Value>,
    /// Today's stored policy setting, if any.
    pub policy_setting: Option<Value>,
    pub assessment: Option<QueueAssessment>,
    pub ballots: Vec<QueueBallot>,
}

/// Changes awaiting a CAB decision, by planned window, then riskiest first,
/// with what each decision rests on.
pub async fn cab_queue(conn: &mut PgConnection, policy_key: &str) -> sqlx::Result<Vec<QueueFacts>> {
    let rows = sqlx::query!(
        r#"SELECT c.id, c.number, c.title, c.state, c.change_type, c.risk_level, u.username AS author, c.revision,
                  c.window_start, c.submitted_at,
                  c.quorum_policy,
                  (SELECT s.value FROM settings s WHERE s.key = $1) AS policy_setting,
                  a.assessor_id AS "assessor_id?",
                  a.decision AS "assessment_decision?",
                  a.assessed_level AS "assessed_level?",
                  (ua.id IS NOT NULL) AS "assessor_found!",
                  (ua.disabled_at IS NULL) AS "assessor_active!",
                  ua.roles AS "assessor_roles?"
           FROM changes c
           JOIN users u ON u.id = c.author_id
           LEFT JOIN LATERAL (
               SELECT a.assessor_id, a.decision, a.assessed_level
               FROM change_assessments a
               WHERE a.change_id = c.id AND a.revision = c.revision AND a.superseded_at IS NULL
               ORDER BY a.created_at DESC, a.id DESC
               LIMIT 1) a ON true
           LEFT JOIN users ua ON ua.id = a.assessor_id
           WHERE c.state IN ('submitted', 'in_assessment', 'in_cab_review')
           ORDER BY coalesce(c.window_start, 'infinity'::timestamptz) ASC, c.risk_rank DESC, c.number ASC
           LIMIT 500"#,
        policy_key
    )
    .fetch_all(&mut *conn)
    .await?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let revisions: Vec<i32> = rows.iter().map(|r| r.revision).collect();
    let ballots = sqlx::query!(
        r#"SELECT v.change_id, v.voter_id, v.choice,
                  (uv.id IS NOT NULL) AS "voter_found!",
                  (uv.disabled_at IS NULL) AS "voter_active!",
                  uv.roles AS "voter_roles?"
           FROM unnest($1::uuid[], $2::int[]) AS q(id, revision)
           JOIN change_votes v ON v.change_id = q.id AND v.revision = q.revision AND v.superseded_at IS NULL
           LEFT JOIN users uv ON uv.id = v.voter_id
           ORDER BY v.change_id, v.created_at, v.id"#,
        &ids,
        &revisions
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut out: Vec<QueueFacts> = rows
        .into_iter()
        .map(|r| QueueFacts {
            assessment: r.assessor_id.map(|assessor_id| QueueAssessment {
                assessor_id,
                decision: r.assessment_decision.unwrap_or_default(),
                assessed_level: r.assessed_level.unwrap_or_default(),
                assessor_now: person(r.assessor_found, r.assessor_active, r.assessor_roles),
            }),
            quorum_policy: r.quorum_policy,
            policy_setting: r.policy_setting,
            ballots: Vec::new(),
            row: QueueRow {
                id: r.id,
                number: r.number,
                title: r.title,
                state: r.state,
                change_type: r.change_type,
                risk_level: r.risk_level,
                author: r.author,
                revision: r.revision,
                window_start: r.window_start,
                submitted_at: r.submitted_at,
            },
        })
        .collect();
    let mut at: std::collections::HashMap<Uuid, usize> = std::collections::HashMap::new();
    for (i, f) in out.iter().enumerate() {
        at.insert(f.row.id, i);
    }
    for b in ballots {
        if let Some(&i) = at.get(&b.change_id) {
            out[i].ballots.push(QueueBallot {
                voter_id: b.voter_id,
                choice: b.choice,
                voter_now: person(b.voter_found, b.voter_active, b.voter_roles),
            });
        }
    }
    Ok(out)
}
