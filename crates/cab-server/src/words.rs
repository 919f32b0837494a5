//! Words for people: people by name, links that are safe to follow, and the
//! audit trail told as sentences, for the pages, the API's summaries and
//! the evidence pack alike. The codes stay in the API and in the details an
//! auditor can unfold; pages lead with what people say.

use std::collections::HashMap;

use cab_domain::Role;
use cab_domain::approval::{AssessmentDecision, VoteChoice};
use cab_domain::audit::{Attempt, AuditAction, AuditRecord};
use cab_domain::change::{ChangeKey, ChangeState, ChangeType, field_label};
use cab_domain::review::{ActionStatus, CloseCode, ReviewReason};
use cab_domain::risk::RiskLevel;
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::error::AppError;

/// Formats a time for pages and sentences: UTC, to the second.
pub fn when(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// The names people go by: display names where they have one, usernames
/// otherwise.
#[derive(Default)]
pub struct People {
    by_username: HashMap<String, String>,
    by_id: HashMap<Uuid, String>,
}

impl People {
    pub async fn load(conn: &mut PgConnection) -> Result<Self, AppError> {
        let mut people = People::default();
        for u in cab_db::users::list(conn).await? {
            let name = if u.display_name.trim().is_empty() {
                u.username.clone()
            } else {
                u.display_name.clone()
            };
            people.by_id.insert(u.id, name.clone());
            people.by_username.insert(u.username, name);
        }
        Ok(people)
    }

    /// The name of the person with this username (the username itself if
    /// nobody has it any more).
    pub fn name(&self, username: &str) -> String {
        self.by_username
            .get(username)
            .cloned()
            .unwrap_or_else(|| username.to_owned())
    }

    pub fn name_of_id(&self, id: Uuid) -> Option<String> {
        self.by_id.get(&id).cloned()
    }
}

/// A value read back from the database as its domain type; a value outside
/// the vocabulary is an internal error, not something to show.
pub fn stored<T>(parsed: Option<T>, what: &str, raw: &str) -> Result<T, AppError> {
    parsed.ok_or_else(|| AppError::Internal(anyhow::anyhow!("stored {what} is unreadable: {raw}")))
}

/// Role names as labels, e.g. "CAB member, Engineer"; "no roles" for none.
pub fn role_labels<S: AsRef<str>>(names: &[S]) -> String {
    if names.is_empty() {
        return "no roles".into();
    }
    names
        .iter()
        .map(|n| match n.as_ref().parse::<Role>() {
            Ok(r) => r.label().to_owned(),
            Err(_) => n.as_ref().replace('_', " "),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether `s` is a web address that is safe to put behind a link: http or
/// https only, nothing that a browser would run or open elsewhere.
pub fn is_web_url(s: &str) -> bool {
    let lower = s.get(..8).unwrap_or(s).to_ascii_lowercase();
    let rest = if lower.starts_with("https://") {
        &s[8..]
    } else if lower.starts_with("http://") {
        &s[7..]
    } else {
        return false;
    };
    !rest.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Text that is a link when it is a web address, and plain text otherwise.
pub struct Link {
    pub href: Option<String>,
    pub text: String,
}

impl Link {
    pub fn new(s: &str) -> Self {
        let text = s.trim().to_owned();
        Link {
            href: is_web_url(&text).then(|| text.clone()),
            text,
        }
    }
}

/// One part of a sentence: text, or text linking to a page of this site.
pub struct Piece {
    pub text: String,
    pub href: Option<String>,
}

/// A sentence whose subject or object may link to its page.
#[derive(Default)]
pub struct Sentence(pub Vec<Piece>);

impl Sentence {
    fn text(mut self, s: impl Into<String>) -> Self {
        self.0.push(Piece {
            text: s.into(),
            href: None,
        });
        self
    }

    fn thing(mut self, t: &Thing) -> Self {
        self.0.push(Piece {
            text: t.name.clone(),
            href: t.href.clone(),
        });
        self
    }

    pub fn pieces(&self) -> &[Piece] {
        &self.0
    }
}

impl std::fmt::Display for Sentence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for p in &self.0 {
            f.write_str(&p.text)?;
        }
        Ok(())
    }
}

/// Something an event is about, by its name, with its page if it has one.
struct Thing {
    name: String,
    href: Option<String>,
}

impl Thing {
    fn plain(name: impl Into<String>) -> Self {
        Thing {
            name: name.into(),
            href: None,
        }
    }
}

/// The names of everything a list of events mentions.
#[derive(Default)]
pub struct Subjects {
    pub people: People,
    changes: HashMap<Uuid, i64>,
    templates: HashMap<Uuid, String>,
    /// Release numbers by id, for refusals (whose records name only the id).
    releases: HashMap<Uuid, i64>,
    /// Off on a change's own page, which need not link to itself.
    link_changes: bool,
}

impl Subjects {
    /// Looks up the people, changes and templates the events name.
    pub async fn load(conn: &mut PgConnection, events: &[AuditRecord]) -> Result<Self, AppError> {
        let mut s = Subjects {
            people: People::load(conn).await?,
            link_changes: true,
            ..Subjects::default()
        };
        if events.iter().any(|e| e.entity_type == "template") {
            for t in cab_db::standard_templates::list(conn).await? {
                s.templates.insert(t.id, t.name);
            }
        }
        for e in events {
            if e.entity_type == "release" {
                let Some(id) = entity_uuid(e) else { continue };
                if text(&e.payload, "release").is_none()
                    && !s.releases.contains_key(&id)
                    && let Some(r) = cab_db::releases::load(conn, id).await?
                {
                    s.releases.insert(id, r.number);
                }
                continue;
            }
            if e.entity_type != "change" {
                continue;
            }
            let Some(id) = entity_uuid(e) else { continue };
            if s.changes.contains_key(&id) {
                continue;
            }
            let number = match e.payload.get("number").and_then(Value::as_i64) {
                Some(n) => Some(n),
                None => cab_db::changes::find(conn, id).await?.map(|c| c.number),
            };
            if let Some(n) = number {
                s.changes.insert(id, n);
            }
        }
        Ok(s)
    }

    /// For the events of one change, already loaded.
    pub fn for_change(people: People, id: Uuid, number: i64) -> Self {
        Subjects {
            people,
            changes: HashMap::from([(id, number)]),
            templates: HashMap::new(),
            releases: HashMap::new(),
            link_changes: false,
        }
    }

    /// A release by its key, name and version as the event recorded them
    /// (a refusal records only the id: its number is looked up), linking
    /// to its page.
    fn release(&self, e: &AuditRecord) -> Thing {
        let id = entity_uuid(e);
        let key = text(&e.payload, "release").map(str::to_owned).or_else(|| {
            id.and_then(|id| self.releases.get(&id).copied())
                .map(crate::releases::key)
        });
        let name = [text(&e.payload, "name"), text(&e.payload, "version")]
            .into_iter()
            .flatten()
            .map(short)
            .filter(|s| !s.trim().is_empty())
            .collect::<Vec<_>>();
        match key {
            Some(key) => Thing {
                href: Some(format!("/releases/{key}")),
                name: if name.is_empty() {
                    key
                } else {
                    format!("{key} {}", name.join(" "))
                },
            },
            None => Thing {
                name: "a release".into(),
                href: id.map(|id| format!("/releases/{id}")),
            },
        }
    }

    fn change(&self, e: &AuditRecord) -> Thing {
        let id = entity_uuid(e);
        let number = e
            .payload
            .get("number")
            .and_then(Value::as_i64)
            .or_else(|| id.and_then(|id| self.changes.get(&id).copied()));
        match (number, id) {
            (Some(n), Some(id)) => Thing {
                name: ChangeKey(n).to_string(),
                href: self.link_changes.then(|| format!("/changes/{id}")),
            },
            (Some(n), None) => Thing::plain(ChangeKey(n).to_string()),
            _ => Thing::plain("a change"),
        }
    }

    fn template(&self, e: &AuditRecord) -> Thing {
        let id = entity_uuid(e);
        let name = text(&e.payload, "name")
            .map(str::to_owned)
            .or_else(|| id.and_then(|id| self.templates.get(&id).cloned()));
        Thing {
            name: match name {
                Some(n) => format!("the standard-change template “{n}”"),
                None => "a standard-change template".into(),
            },
            href: id.map(|id| format!("/templates/{id}")),
        }
    }

    fn user(&self, id: Option<Uuid>, username: Option<&str>) -> Thing {
        let name = id
            .and_then(|id| self.people.name_of_id(id))
            .or_else(|| username.map(|u| self.people.name(u)));
        Thing {
            name: name.unwrap_or_else(|| "an account".into()),
            href: id.map(|id| format!("/admin/users/{id}")),
        }
    }

    /// Who acted: a person by name, the command line, or nobody known.
    fn actor(&self, e: &AuditRecord) -> Thing {
        match (e.actor_id, e.actor_username.as_deref()) {
            (Some(id), username) => Thing {
                name: self
                    .people
                    .name_of_id(id)
                    .or_else(|| username.map(|u| self.people.name(u)))
                    .unwrap_or_else(|| "A former account".into()),
                href: None,
            },
            (None, Some(_)) => Thing::plain("An operator at the command line"),
            (None, None) => Thing::plain("Someone"),
        }
    }

    /// What a refusal was about, if it named one thing.
    fn object(&self, e: &AuditRecord) -> Option<Thing> {
        e.entity_id.as_ref()?;
        match e.entity_type.as_str() {
            "change" => Some(self.change(e)),
            "template" => Some(self.template(e)),
            "release" => {
                let r = self.release(e);
                Some(Thing {
                    name: if r.href.is_some() && r.name != "a release" {
                        format!("release {}", r.name)
                    } else {
                        r.name
                    },
                    href: r.href,
                })
            }
            "user" => Some(self.user(entity_uuid(e), None)),
            "deployment" => Some(Thing {
                name: "a deployment".into(),
                href: entity_uuid(e).map(|id| format!("/deployments/{id}")),
            }),
            "freeze" => Some(Thing {
                name: "a freeze".into(),
                href: Some("/freezes".into()),
            }),
            "break_glass" => Some(Thing {
                name: "a break-glass request".into(),
                href: Some("/exceptions#break-glass".into()),
            }),
            "observed" => Some(Thing {
                name: "a finding".into(),
                href: Some("/exceptions#findings".into()),
            }),
            _ => None,
        }
    }

    /// The change a deployment event is about.
    fn deployed_change(&self, e: &AuditRecord) -> Thing {
        let id = text(&e.payload, "change_id").and_then(|id| id.parse::<Uuid>().ok());
        let name = text(&e.payload, "change").unwrap_or("a change").to_owned();
        Thing {
            href: id
                .filter(|_| self.link_changes)
                .map(|id| format!("/changes/{id}")),
            name,
        }
    }

    /// One event as a sentence.
    pub fn describe(&self, e: &AuditRecord) -> Sentence {
        let p = &e.payload;
        let who = self.actor(e);
        let start = Sentence::default().thing(&who);
        let revision = p.get("revision").and_then(Value::as_i64).unwrap_or(0);
        let Some(action) = AuditAction::parse(&e.action) else {
            return start
                .text(" did something this version of CAB has no words for; see its details.");
        };
        use AuditAction as A;
        match action {
            A::ChangeCreated => {
                let mut s = start
                    .text(" filed ")
                    .thing(&self.change(e))
                    .text(" as a draft");
                if p.get("template").is_some_and(|t| !t.is_null()) {
                    s = s.text(" from a standard-change template");
                }
                match level(p, "risk_level") {
                    Some(l) => s.text(format!(", at {} risk.", l.label().to_lowercase())),
                    None => s.text("."),
                }
            }
            A::ChangeEdited => {
                let fields = strings(p, "fields");
                let s = start.text(" edited ").thing(&self.change(e));
                let mut s = if fields.is_empty() {
                    s.text(" without changing anything")
                } else {
                    s.text(": ").text(
                        fields
                            .iter()
                            .map(|f| field_label(f).unwrap_or("another field"))
                            .collect::<Vec<_>>()
                            .join(", "),
                    )
                };
                s = s.text(".");
                if revision > 0 && !fields.is_empty() {
                    s = s.text(format!(" It is now at revision {revision}."));
                }
                if p.get("back_to_review").and_then(Value::as_bool) == Some(true) {
                    s = s.text(" It went back to review.");
                }
                s
            }
            A::ChangeSubmitted | A::ChangeResubmitted => start
                .text(if action == A::ChangeSubmitted {
                    " submitted "
                } else {
                    " resubmitted "
                })
                .thing(&self.change(e))
                .text(format!(" for review (revision {revision}).")),
            A::ChangeWithdrawn => start.text(" withdrew ").thing(&self.change(e)).text("."),
            A::ChangeCancelled => {
                let s = start.text(" cancelled ").thing(&self.change(e));
                match text(p, "reason").filter(|r| !r.trim().is_empty()) {
                    Some(r) => s.text(format!(": “{}”", r.trim())),
                    None => s.text("."),
                }
            }
            A::ChangeCommented => start
                .text(" commented on ")
                .thing(&self.change(e))
                .text("."),
            A::AssessmentStarted => start
                .text(" started the security assessment of ")
                .thing(&self.change(e))
                .text(format!(" (revision {revision}).")),
            A::ChangeAssessed => {
                let verdict = match text(p, "decision").and_then(AssessmentDecision::parse) {
                    Some(AssessmentDecision::Accept) => " and accepted it",
                    Some(AssessmentDecision::AcceptWithConditions) => {
                        " and accepted it with conditions"
                    }
                    Some(AssessmentDecision::Reject) => " and rejected it",
                    None => "",
                };
                let mut s = start
                    .text(format!(" assessed revision {revision} of "))
                    .thing(&self.change(e))
                    .text(verdict);
                if let Some(l) = level(p, "assessed_level") {
                    s = s.text(format!(", at {} risk", l.label().to_lowercase()));
                }
                s = s.text(".");
                if p.get("lowers_risk").and_then(Value::as_bool) == Some(true) {
                    let was = level(p, "engineer_level")
                        .map(|l| format!(" ({})", l.label().to_lowercase()))
                        .unwrap_or_default();
                    s = s.text(format!(" This lowered the engineer's risk level{was}."));
                }
                s
            }
            A::ChangeVoted => match text(p, "vote").and_then(VoteChoice::parse) {
                Some(choice) => start
                    .text(format!(
                        " voted {} revision {revision} of ",
                        vote_phrase(choice)
                    ))
                    .thing(&self.change(e))
                    .text("."),
                None => start.text(" voted on ").thing(&self.change(e)).text("."),
            },
            A::ChangeApproved => {
                let change = self.change(e);
                if let Some(name) = text(p, "template_name") {
                    return Sentence::default().thing(&change).text(format!(
                        " was approved when it was submitted: it follows the approved standard-change template “{name}”."
                    ));
                }
                let mut s = Sentence::default()
                    .thing(&change)
                    .text(format!(" was approved on revision {revision}"));
                if let Some(n) = p.get("approvals").and_then(Value::as_i64) {
                    s = s.text(format!(
                        " with {n} CAB approval{}",
                        if n == 1 { "" } else { "s" }
                    ));
                }
                s = s.text(".");
                if let Some(due) = text(p, "retrospective_due_at")
                    .and_then(|t| t.parse::<chrono::DateTime<chrono::Utc>>().ok())
                {
                    s = s.text(format!(" Its retrospective review is due {}.", when(&due)));
                }
                s
            }
            A::ChangeRejected => {
                let s = Sentence::default()
                    .thing(&self.change(e))
                    .text(format!(" was rejected on revision {revision}"));
                match text(p, "reason") {
                    Some(r) => s.text(format!(": {r}.")),
                    None => s.text("."),
                }
            }
            A::ChangesRequested => Sentence::default().thing(&self.change(e)).text(format!(
                " went back to its authors: changes were requested on revision {revision}."
            )),
            A::RetrospectiveCompleted => start
                .text(" recorded the retrospective review of ")
                .thing(&self.change(e))
                .text("."),
            A::ChangeClosed => {
                let code = text(p, "close_code")
                    .and_then(CloseCode::parse)
                    .map_or("closed", CloseCode::label);
                let s = if e.actor_id.is_none() {
                    Sentence::default()
                        .text("CAB closed ")
                        .thing(&self.change(e))
                } else {
                    start.text(" closed ").thing(&self.change(e))
                };
                s.text(format!(": {}.", code.to_lowercase()))
            }
            A::ReviewOwed => {
                let reasons: Vec<&str> = strings(p, "reasons")
                    .iter()
                    .filter_map(|r| ReviewReason::parse(r))
                    .map(ReviewReason::label)
                    .collect();
                Sentence::default()
                    .text("A post-implementation review of ")
                    .thing(&self.change(e))
                    .text(if reasons.is_empty() {
                        " is owed.".to_owned()
                    } else {
                        format!(" is owed: {}.", reasons.join("; "))
                    })
            }
            A::ReviewReopened => Sentence::default()
                .text("The post-implementation review of ")
                .thing(&self.change(e))
                .text(" is open again: a production deployment ended after its sign-off."),
            A::ReviewSaved => {
                let s = start
                    .text(" saved revision ")
                    .text(revision.to_string())
                    .text(" of the review of ")
                    .thing(&self.change(e));
                if p.get("amends_signed_off").and_then(Value::as_bool) == Some(true) {
                    s.text(", amending the signed-off review; it needs signing off again.")
                } else {
                    s.text(".")
                }
            }
            A::ReviewSignedOff => start
                .text(format!(" signed off revision {revision} of the review of "))
                .thing(&self.change(e))
                .text("."),
            A::ReviewActionAdded => start
                .text(format!(
                    " added the action “{}” for {}, due {}, to the review of ",
                    short(text(p, "title").unwrap_or_default()),
                    short(text(p, "owner").unwrap_or_default()),
                    text(p, "due_on").unwrap_or_default()
                ))
                .thing(&self.change(e))
                .text("."),
            A::ReviewActionUpdated => {
                let to = text(p, "to")
                    .and_then(ActionStatus::parse)
                    .map_or("changed", ActionStatus::label);
                start
                    .text(" marked an action item of the review of ")
                    .thing(&self.change(e))
                    .text(format!(" {}.", to.to_lowercase()))
            }
            A::ReviewSettingsChanged => start.text(" changed the review settings."),
            A::TemplateProposed => start.text(" proposed ").thing(&self.template(e)).text("."),
            A::TemplateVoted => {
                let phrase = text(p, "vote")
                    .and_then(VoteChoice::parse)
                    .map_or("on", vote_phrase);
                start
                    .text(format!(" voted {phrase} "))
                    .thing(&self.template(e))
                    .text(".")
            }
            A::TemplateApproved | A::TemplateRejected => {
                let t = self.template(e);
                let mut s = Sentence::default();
                s = s.thing(&Thing {
                    name: capitalized(&t.name),
                    href: t.href,
                });
                s.text(if action == A::TemplateApproved {
                    " was approved."
                } else {
                    " was rejected."
                })
            }
            A::TemplateRetired => start.text(" retired ").thing(&self.template(e)).text("."),
            A::UserCreated => {
                let kind = if p.get("is_service").and_then(Value::as_bool) == Some(true) {
                    " created the service account "
                } else {
                    " created the account "
                };
                start
                    .text(kind)
                    .thing(&self.user(entity_uuid(e), text(p, "username")))
                    .text(format!(" with {}.", roles_phrase(&strings(p, "roles"))))
            }
            A::UserRolesChanged => start
                .text(" changed the roles of ")
                .thing(&self.user(entity_uuid(e), text(p, "username")))
                .text(format!(
                    " from {} to {}.",
                    role_list(&strings(p, "from")),
                    role_list(&strings(p, "to"))
                )),
            A::UserRolesRequested => start
                .text(format!(
                    " asked for {} for ",
                    roles_phrase(&strings(p, "roles"))
                ))
                .thing(&self.user(entity_uuid(e), text(p, "username")))
                .text("; it holds once a second administrator confirms it."),
            A::UserRolesConfirmed => {
                let requester = text(p, "requested_by_id").and_then(|id| id.parse().ok());
                start
                    .text(format!(
                        " confirmed {} for ",
                        roles_phrase(&strings(p, "roles"))
                    ))
                    .thing(&self.user(entity_uuid(e), text(p, "username")))
                    .text(", as asked for by ")
                    .thing(&self.user(requester, text(p, "requested_by")))
                    .text(format!(
                        ". The roles are now {}.",
                        role_list(&strings(p, "to"))
                    ))
            }
            A::UserRolesCancelled => {
                let what = if p.get("replaced").and_then(Value::as_bool) == Some(true) {
                    " changed the roles again, which withdrew the request for "
                } else {
                    " cancelled the request for "
                };
                start
                    .text(format!("{what}{} for ", roles_phrase(&strings(p, "roles"))))
                    .thing(&self.user(entity_uuid(e), text(p, "username")))
                    .text(".")
            }
            A::UserDisabled => start
                .text(" disabled the account of ")
                .thing(&self.user(entity_uuid(e), text(p, "username")))
                .text("."),
            A::UserPasswordSet => start
                .text(" set a new password for ")
                .thing(&self.user(entity_uuid(e), text(p, "username")))
                .text("."),
            A::ApiTokenCreated | A::ApiTokenRevoked => {
                let account_id = text(p, "account_id").and_then(|s| s.parse().ok());
                let account = self.user(account_id, text(p, "account"));
                let token = text(p, "name").unwrap_or_default();
                if action == A::ApiTokenCreated {
                    start
                        .text(format!(" issued the API token “{token}” to "))
                        .thing(&account)
                        .text(".")
                } else {
                    start
                        .text(format!(" revoked the API token “{token}” of "))
                        .thing(&account)
                        .text(".")
                }
            }
            A::LoginSucceeded => {
                start.text(if text(p, "via") == Some(cab_db::sessions::KIND_API) {
                    " signed in to the API."
                } else {
                    " signed in."
                })
            }
            A::LoginFailed => Sentence::default().text(format!(
                "A sign-in as “{}” failed.",
                short(text(p, "username").unwrap_or_default())
            )),
            A::LoginLocked => {
                let secs = p
                    .get("retry_after_seconds")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                let failures = p.get("failures").and_then(Value::as_i64).unwrap_or(0);
                Sentence::default().text(format!(
                    "Sign-in as “{}” was locked for {secs} seconds after {failures} failed attempts.",
                    short(text(p, "username").unwrap_or_default())
                ))
            }
            A::Logout => start.text(" signed out."),
            A::SessionExpired => start.text("'s session ended after a time without activity."),
            A::QuorumChanged => {
                let changes = quorum_changes(p);
                if changes.is_empty() {
                    start.text(" saved the quorum policy without changing it.")
                } else {
                    start.text(format!(
                        " changed the quorum policy: {}.",
                        changes.join("; ")
                    ))
                }
            }
            A::DemoSeeded => Sentence::default().text("The demonstration data was loaded."),
            A::AuditExported => {
                let trail = match text(p, "trail") {
                    Some("approvals") => "the approval trail",
                    _ => "the audit events",
                };
                let format = match text(p, "format") {
                    Some("ndjson") => "NDJSON",
                    _ => "CSV",
                };
                let filtered = p
                    .get("filter")
                    .and_then(Value::as_object)
                    .is_some_and(|f| !f.is_empty());
                start.text(format!(
                    " exported {trail} as {format}{}.",
                    if filtered { ", filtered" } else { "" }
                ))
            }
            A::DeploymentAuthorized => {
                let initiator = text(p, "initiator").unwrap_or_default();
                let executor = text(p, "executor").unwrap_or_default();
                let mut s = start
                    .text(" was authorized to deploy ")
                    .thing(&self.deployed_change(e))
                    .text(format!(" (revision {revision}) to {}", environment_name(p)));
                if initiator != executor && !initiator.is_empty() {
                    s = s.text(format!(" for {}", short(initiator)));
                }
                s.text(".")
            }
            A::DeploymentStarted
            | A::DeploymentSucceeded
            | A::DeploymentFailed
            | A::DeploymentRolledBack
            | A::DeploymentAborted => {
                let what = match action {
                    A::DeploymentStarted => " started",
                    A::DeploymentSucceeded => " succeeded",
                    A::DeploymentFailed => " failed",
                    A::DeploymentRolledBack => " was rolled back",
                    _ => " was aborted",
                };
                let s = Sentence::default()
                    .text("The deployment of ")
                    .thing(&self.deployed_change(e))
                    .text(format!(" to {}{what}", environment_name(p)));
                let s = match text(p, "note").filter(|n| !n.trim().is_empty()) {
                    Some(n) => s.text(format!(": “{}”", short(n.trim()))),
                    None => s.text("."),
                };
                let change = text(p, "change").unwrap_or("The change");
                let s = match text(p, "change_to").and_then(ChangeState::parse) {
                    Some(ChangeState::Implementing) => {
                        s.text(format!(" {change} is now being deployed."))
                    }
                    Some(ChangeState::Implemented) => s.text(format!(" {change} is now deployed.")),
                    Some(ChangeState::ImplementationFailed) => {
                        s.text(format!(" {change} is marked as failed to deploy."))
                    }
                    Some(other) => s.text(format!(
                        " {change} is now {}.",
                        other.label().to_lowercase()
                    )),
                    None => s,
                };
                if e.actor_username.is_some() {
                    s.text(" Reported by ").thing(&who).text(".")
                } else {
                    s
                }
            }
            A::DeploymentExpired => Sentence::default()
                .text("The authorization to deploy ")
                .thing(&self.deployed_change(e))
                .text(format!(" to {} ran out unused.", environment_name(p))),
            A::EnvironmentsChanged => start.text(format!(
                " changed the environments: {}.",
                strings(p, "labels").join(" → ")
            )),
            A::AccountEnvironmentsSet => {
                let envs = strings(p, "environments");
                start
                    .text(" set where ")
                    .thing(&self.user(entity_uuid(e), text(p, "username")))
                    .text(if envs.is_empty() {
                        " may deploy: nowhere.".to_owned()
                    } else {
                        format!(" may deploy: {}.", envs.join(", "))
                    })
            }
            A::FreezeDeclared => start.text(format!(
                " declared a freeze: “{}”.",
                short(text(p, "reason").unwrap_or_default())
            )),
            A::FreezeLifted => start.text(format!(
                " lifted the freeze “{}”.",
                short(text(p, "reason").unwrap_or_default())
            )),
            A::SigningKeyRotated => {
                start.text(" made a new key to sign deployment authorizations.")
            }
            A::CheckpointKeyMade => {
                let s = if e.actor_username.is_none() {
                    Sentence::default().text("CAB")
                } else {
                    start
                };
                s.text(format!(
                    " made a new key to sign the audit trail's checkpoints: {}.",
                    text(p, "verifier_key").unwrap_or("its public key is published")
                ))
            }
            A::BreakGlassRequested => start
                .text(" asked for a break-glass deployment of ")
                .thing(&self.deployed_change(e))
                .text(format!(
                    " to {} for incident {}: “{}”.",
                    environment_name(p),
                    short(text(p, "incident").unwrap_or_default()),
                    short(text(p, "reason").unwrap_or_default())
                )),
            A::BreakGlassConfirmed => start
                .text(" confirmed the break-glass deployment of ")
                .thing(&self.deployed_change(e))
                .text(format!(
                    " to {} asked for by {}.",
                    environment_name(p),
                    short(text(p, "requester").unwrap_or("someone else"))
                )),
            A::DeploymentObserved => Sentence::default().text(format!(
                "{} was seen running {} in {} with no authorized deployment behind it.",
                short(text(p, "service").unwrap_or("A service")),
                short(text(p, "digest").unwrap_or("an artifact")),
                environment_name(p)
            )),
            A::FindingResolved => start.text(format!(
                " resolved the finding about {} in {}: “{}”.",
                short(text(p, "service").unwrap_or("a service")),
                environment_name(p),
                short(text(p, "resolution").unwrap_or_default())
            )),
            A::MaintenancePeriodAdded => start.text(format!(
                " added a maintenance period for {}: {}.",
                short(text(p, "service").unwrap_or("a service")),
                short(text(p, "described").unwrap_or_default())
            )),
            A::MaintenancePeriodRemoved => start.text(format!(
                " removed the maintenance period for {}: {}.",
                short(text(p, "service").unwrap_or("a service")),
                short(text(p, "described").unwrap_or_default())
            )),
            A::CalendarLimitSet => start.text(match p.get("after").and_then(|v| v.as_u64()) {
                Some(n) => format!(" allowed at most {n} production changes in one hour."),
                None => " removed the limit on production changes in one hour.".to_owned(),
            }),
            A::CalendarFeedCreated => start.text(format!(
                " made a calendar feed, “{}”.",
                short(text(p, "label").unwrap_or_default())
            )),
            A::CalendarFeedRevoked => start.text(format!(
                " revoked the calendar feed “{}”.",
                short(text(p, "label").unwrap_or_default())
            )),
            A::ReleaseCreated
            | A::ReleaseEdited
            | A::ReleaseSubmitted
            | A::ReleaseVoted
            | A::ReleaseApproved
            | A::ReleaseReturned
            | A::ReleaseApprovalVoided
            | A::ReleasePhaseOpened
            | A::ReleasePhaseRolledBack
            | A::ReleaseCompleted
            | A::ReleaseCancelled => {
                let release = self.release(e);
                let revision = p.get("revision").and_then(Value::as_i64).unwrap_or(0);
                let phase = p.get("phase").and_then(Value::as_i64).unwrap_or(0);
                let reason = short(text(p, "reason").unwrap_or_default());
                let (before, after) = match action {
                    A::ReleaseCreated => (" planned release ".to_owned(), ".".to_owned()),
                    A::ReleaseEdited => match text(p, "note") {
                        Some(note) => (
                            " edited release ".to_owned(),
                            format!(" (revision {revision}): {}.", short(note)),
                        ),
                        None => (
                            " edited the plan of release ".to_owned(),
                            format!(" (revision {revision})."),
                        ),
                    },
                    A::ReleaseSubmitted => (
                        " submitted release ".to_owned(),
                        " for CAB's go/no-go.".to_owned(),
                    ),
                    A::ReleaseVoted => (
                        format!(
                            " voted “{}” on revision {revision} of release ",
                            text(p, "vote")
                                .and_then(cab_domain::approval::VoteChoice::parse)
                                .map_or("?", |v| v.label())
                        ),
                        ".".to_owned(),
                    ),
                    A::ReleaseApproved => (
                        "'s vote completed the go/no-go: release ".to_owned(),
                        format!(" is approved at revision {revision}."),
                    ),
                    A::ReleaseReturned => (
                        "'s vote returned release ".to_owned(),
                        format!(" to draft: {reason}"),
                    ),
                    A::ReleaseApprovalVoided => (
                        "'s edit voided CAB's approval of release ".to_owned(),
                        format!("; revision {revision} needs a new go/no-go."),
                    ),
                    A::ReleasePhaseOpened => {
                        (format!(" opened phase {phase} of release "), ".".to_owned())
                    }
                    A::ReleasePhaseRolledBack => (
                        format!(" rolled back phase {phase} of release "),
                        format!(": “{reason}”."),
                    ),
                    A::ReleaseCompleted => (" completed release ".to_owned(), ".".to_owned()),
                    _ => (" cancelled release ".to_owned(), format!(": “{reason}”.")),
                };
                start.text(before).thing(&release).text(after)
            }
            A::AccessDenied => {
                let message = text(p, "message").unwrap_or("no reason was recorded.");
                match text(p, "attempted").and_then(Attempt::parse) {
                    Some(attempt) => {
                        let mut s = start.text(format!(" tried to {}", attempt.label()));
                        if let Some(object) = self.object(e) {
                            s = s.text(" ").thing(&object);
                        }
                        s.text(format!(" and was refused: {message}"))
                    }
                    None => start.text(format!(" was refused: {message}")),
                }
            }
        }
    }
}

/// The environment an event names, by its label when the event carries it.
fn environment_name(p: &Value) -> String {
    text(p, "environment_label")
        .map(str::to_owned)
        .or_else(|| text(p, "environment").map(str::to_uppercase))
        .unwrap_or_else(|| "an environment".into())
}

fn entity_uuid(e: &AuditRecord) -> Option<Uuid> {
    e.entity_id.as_deref().and_then(|id| id.parse().ok())
}

fn text<'a>(p: &'a Value, key: &str) -> Option<&'a str> {
    p.get(key).and_then(Value::as_str)
}

fn strings(p: &Value, key: &str) -> Vec<String> {
    p.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn level(p: &Value, key: &str) -> Option<RiskLevel> {
    text(p, key).and_then(RiskLevel::parse)
}

/// "to approve", "to reject", "to request changes to", for "voted … X".
fn vote_phrase(choice: VoteChoice) -> &'static str {
    match choice {
        VoteChoice::Approve => "to approve",
        VoteChoice::Reject => "to reject",
        VoteChoice::RequestChanges => "to request changes to",
    }
}

fn role_list(names: &[String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        role_labels(names)
    }
}

fn roles_phrase(names: &[String]) -> String {
    if names.is_empty() {
        "no roles".into()
    } else if names.len() == 1 {
        format!("the role {}", role_labels(names))
    } else {
        format!("the roles {}", role_labels(names))
    }
}

fn capitalized(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// At most 64 characters of something a stranger typed.
fn short(s: &str) -> String {
    if s.chars().count() > 64 {
        format!("{}…", s.chars().take(64).collect::<String>())
    } else {
        s.to_owned()
    }
}

/// What changed between the `from` and `to` policies of a quorum event.
fn quorum_changes(p: &Value) -> Vec<String> {
    let (Some(from), Some(to)) = (p.get("from"), p.get("to")) else {
        return Vec::new();
    };
    let levels = RiskLevel::ALL
        .iter()
        .map(|l| (l.as_str(), format!("{} risk", l.label())))
        .chain([(
            "emergency",
            format!("{} changes", ChangeType::Emergency.label()),
        )]);
    let mut out = Vec::new();
    for (key, name) in levels {
        let rule = |v: &Value| {
            (
                v.pointer(&format!("/{key}/approvals"))
                    .and_then(Value::as_i64),
                v.pointer(&format!("/{key}/assessment"))
                    .and_then(Value::as_bool),
            )
        };
        let ((a0, s0), (a1, s1)) = (rule(from), rule(to));
        let mut said = Vec::new();
        if let (Some(a0), Some(a1)) = (a0, a1)
            && a0 != a1
        {
            said.push(format!("{a0} → {a1} approvals"));
        }
        if let (Some(s0), Some(s1)) = (s0, s1)
            && s0 != s1
        {
            said.push(
                if s1 {
                    "an accepting assessment now needed"
                } else {
                    "no assessment needed any more"
                }
                .to_owned(),
            );
        }
        if !said.is_empty() {
            out.push(format!("{name}: {}", said.join(", ")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use serde_json::json;

    #[test]
    fn only_web_addresses_become_links() {
        for good in [
            "https://git.example/pr/1",
            "http://ci.example/run",
            "HTTPS://X.example",
        ] {
            assert!(is_web_url(good), "{good}");
        }
        for bad in [
            "javascript:alert(1)",
            "JAVASCRIPT:alert(1)",
            "data:text/html,hi",
            "//evil.example",
            "https://",
            "ftp://files.example",
            "https://a.example/ x",
            "/changes/1",
            "",
        ] {
            assert!(!is_web_url(bad), "{bad}");
        }
        assert!(Link::new("javascript:alert(1)").href.is_none());
        assert_eq!(
            Link::new(" https://ci.example/1 ").href.as_deref(),
            Some("https://ci.example/1")
        );
    }

    fn event(action: &str, entity: &str, payload: Value) -> AuditRecord {
        AuditRecord {
            seq: 1,
            occurred_at: Utc::now(),
            actor_id: Some(Uuid::from_u128(1)),
            actor_username: Some("carol".into()),
            actor_roles: vec!["cab_member".into()],
            action: action.into(),
            entity_type: entity.into(),
            entity_id: Some(Uuid::from_u128(2).to_string()),
            payload,
            request_id: None,
            client_addr: None,
        }
    }

    fn subjects() -> Subjects {
        let mut people = People::default();
        people
            .by_username
            .insert("carol".into(), "Carol CAB".into());
        people.by_id.insert(Uuid::from_u128(1), "Carol CAB".into());
        Subjects::for_change(people, Uuid::from_u128(2), 12)
    }

    #[test]
    fn release_events_and_refusals_name_the_release_and_link_to_it() {
        let mut s = subjects();
        s.releases.insert(Uuid::from_u128(2), 4);
        let refused = event(
            "access.denied",
            "release",
            json!({"attempted": "release.vote", "reason": "self_approval", "message": "You wrote it."}),
        );
        let said = s.describe(&refused);
        assert_eq!(
            said.to_string(),
            "Carol CAB tried to vote on release REL-4 and was refused: You wrote it."
        );
        assert!(
            said.pieces()
                .iter()
                .any(|p| p.href.as_deref() == Some("/releases/REL-4"))
        );
        let approved = event(
            "release.approved",
            "release",
            json!({"release": "REL-4", "name": "Winter", "version": "2026.12.1", "revision": 2}),
        );
        assert_eq!(
            s.describe(&approved).to_string(),
            "Carol CAB's vote completed the go/no-go: release REL-4 Winter 2026.12.1 is approved at revision 2."
        );
        // Planning a release names no release yet.
        let mut planned = event(
            "access.denied",
            "release",
            json!({"attempted": "release.create", "reason": "release_manager_required", "message": "Only release managers."}),
        );
        planned.entity_id = None;
        assert_eq!(
            s.describe(&planned).to_string(),
            "Carol CAB tried to plan a release and was refused: Only release managers."
        );
    }

    #[test]
    fn events_read_as_sentences() {
        let s = subjects();
        let cases = [
            (
                event(
                    "change.voted",
                    "change",
                    json!({"number": 12, "revision": 2, "vote": "approve"}),
                ),
                "Carol CAB voted to approve revision 2 of CHG-12.",
            ),
            (
                event(
                    "change.voted",
                    "change",
                    json!({"number": 12, "revision": 1, "vote": "request_changes"}),
                ),
                "Carol CAB voted to request changes to revision 1 of CHG-12.",
            ),
            (
                event(
                    "change.edited",
                    "change",
                    json!({"number": 12, "revision": 3, "fields": ["window_start", "pr_url"], "back_to_review": true}),
                ),
                "Carol CAB edited CHG-12: Window start, Pull request. It is now at revision 3. It went back to review.",
            ),
            (
                event(
                    "access.denied",
                    "change",
                    json!({"attempted": "change.vote", "reason": "self_approval", "message": "You wrote it."}),
                ),
                "Carol CAB tried to vote on CHG-12 and was refused: You wrote it.",
            ),
            (
                event(
                    "user.roles_changed",
                    "user",
                    json!({"username": "erin", "from": ["engineer"], "to": ["cab_member", "auditor"]}),
                ),
                "Carol CAB changed the roles of erin from Engineer to CAB member, Auditor.",
            ),
            (
                event(
                    "settings.quorum_changed",
                    "settings",
                    json!({"from": {"medium": {"approvals": 2, "assessment": false}},
                           "to": {"medium": {"approvals": 3, "assessment": true}}}),
                ),
                "Carol CAB changed the quorum policy: Medium risk: 2 → 3 approvals, an accepting assessment now needed.",
            ),
            (
                event(
                    "change.approved",
                    "change",
                    json!({"number": 12, "revision": 2, "approvals": 2}),
                ),
                "CHG-12 was approved on revision 2 with 2 CAB approvals.",
            ),
        ];
        for (e, expected) in cases {
            assert_eq!(s.describe(&e).to_string(), expected);
        }
        let unknown = event("something.new", "change", json!({}));
        assert!(!s.describe(&unknown).to_string().contains("something.new"));
    }
}
