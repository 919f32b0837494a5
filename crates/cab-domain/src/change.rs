//! Change requests: their vocabulary, what makes one complete, and the
//! lifecycle as a state machine with one function that says whether an
//! action is allowed for an actor, and why not.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::risk::{RiskAnswers, answer_errors};
use crate::{Actor, Denial, Role, text};

vocabulary!(
    /// How a change is governed: standard (pre-approved routine), normal, or emergency.
    ChangeType {
        Standard = "standard" / "Standard",
        Normal = "normal" / "Normal",
        Emergency = "emergency" / "Emergency",
    }
);

vocabulary!(Category {
    Feature = "feature" / "Feature",
    BugFix = "bug_fix" / "Bug fix",
    SecurityPatch = "security_patch" / "Security patch",
    Configuration = "configuration" / "Configuration or baseline change",
    Infrastructure = "infrastructure" / "Infrastructure",
    DependencyUpdate = "dependency_update" / "Dependency update",
});

vocabulary!(Priority {
    Low = "low" / "Low",
    Medium = "medium" / "Medium",
    High = "high" / "High",
    Urgent = "urgent" / "Urgent",
});

vocabulary!(
    /// The staging environments, in promotion order.
    Environment {
        Dev = "DEV" / "DEV",
        Test = "TEST" / "TEST",
        Stage = "STAGE" / "STAGE",
        Prod = "PROD" / "PROD",
    }
);

vocabulary!(
    /// Where a change is in its life. A production deployment moves an
    /// approved change on: being deployed, then deployed or failed.
    ChangeState {
        Draft = "draft" / "Draft",
        Submitted = "submitted" / "Submitted",
        InAssessment = "in_assessment" / "In assessment",
        InCabReview = "in_cab_review" / "In CAB review",
        ChangesRequested = "changes_requested" / "Changes requested",
        Approved = "approved" / "Approved",
        Rejected = "rejected" / "Rejected",
        Withdrawn = "withdrawn" / "Withdrawn",
        Cancelled = "cancelled" / "Cancelled",
        Implementing = "implementing" / "Being deployed",
        Implemented = "implemented" / "Deployed",
        ImplementationFailed = "implementation_failed" / "Deployment failed",
        Closed = "closed" / "Closed",
    }
);

impl ChangeState {
    /// No further transitions and no edits.
    pub fn is_closed(self) -> bool {
        matches!(
            self,
            ChangeState::Withdrawn
                | ChangeState::Cancelled
                | ChangeState::Rejected
                | ChangeState::Closed
        )
    }

    /// Approved, and since then possibly deployed to production: the states
    /// in which its approval still stands.
    pub fn carries_approval(self) -> bool {
        matches!(
            self,
            ChangeState::Approved
                | ChangeState::Implementing
                | ChangeState::Implemented
                | ChangeState::ImplementationFailed
        )
    }

    /// Whether a decision has been made (approved or rejected).
    pub fn is_decided(self) -> bool {
        matches!(self, ChangeState::Approved | ChangeState::Rejected)
    }
}

/// Which kinds of testing cover the change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TestLevels {
    pub unit: bool,
    pub integration: bool,
    pub system: bool,
    pub acceptance: bool,
}

/// Everything people write on a change request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeContent {
    pub title: String,
    pub description: String,
    pub justification: String,
    pub change_type: ChangeType,
    pub category: Category,
    pub priority: Priority,
    pub services: Vec<String>,
    pub environments: Vec<Environment>,
    pub implementation_plan: String,
    pub test_plan: String,
    pub test_levels: TestLevels,
    pub test_evidence: Vec<String>,
    pub rollback_plan: String,
    pub window_start: Option<DateTime<Utc>>,
    pub window_end: Option<DateTime<Utc>>,
    /// The IANA zone or offset the window was entered in, for display.
    pub window_tz: String,
    pub pr_url: String,
    pub commit_sha: String,
    pub artifact_digest: String,
    /// Usernames of the other people who worked on it; they count as its
    /// authors for separation of duties.
    pub contributors: Vec<String>,
    pub risk: RiskAnswers,
}

/// A problem with one field, named so forms can show it beside the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

fn err(field: &'static str, message: impl Into<String>) -> FieldError {
    FieldError {
        field,
        message: message.into(),
    }
}

/// An http(s) link of sensible length with no whitespace: what a pull
/// request or an evidence link must be.
pub fn is_link(s: &str) -> bool {
    (s.starts_with("https://") || s.starts_with("http://"))
        && s.len() > 10
        && s.len() <= 2000
        && !s.chars().any(char::is_whitespace)
}

/// A service tag: lowercase letters, digits, `.`, `_`, `-`, 1 to 64 long.
pub fn normalize_service(s: &str) -> Option<String> {
    let t = s.trim().to_lowercase();
    let ok = !t.is_empty()
        && t.len() <= 64
        && t.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    ok.then_some(t)
}

const LIMITS: [(&str, usize); 6] = [
    ("title", 200),
    ("description", 20_000),
    ("justification", 10_000),
    ("implementation_plan", 20_000),
    ("test_plan", 20_000),
    ("rollback_plan", 20_000),
];

/// The fields a change must have filled in to be submitted, in form order.
pub const SUBMISSION_FIELDS: [&str; 9] = [
    "title",
    "description",
    "justification",
    "environments",
    "implementation_plan",
    "test_plan",
    "rollback_plan",
    "window_start",
    "window_end",
];

impl ChangeContent {
    fn text(&self, field: &str) -> &str {
        match field {
            "title" => &self.title,
            "description" => &self.description,
            "justification" => &self.justification,
            "implementation_plan" => &self.implementation_plan,
            "test_plan" => &self.test_plan,
            "rollback_plan" => &self.rollback_plan,
            _ => "",
        }
    }

    /// An empty change as a new form shows it: a normal feature of medium
    /// priority, windows entered in UTC.
    pub fn blank() -> ChangeContent {
        ChangeContent {
            title: String::new(),
            description: String::new(),
            justification: String::new(),
            change_type: ChangeType::Normal,
            category: Category::Feature,
            priority: Priority::Medium,
            services: Vec::new(),
            environments: Vec::new(),
            implementation_plan: String::new(),
            test_plan: String::new(),
            test_levels: TestLevels::default(),
            test_evidence: Vec::new(),
            rollback_plan: String::new(),
            window_start: None,
            window_end: None,
            window_tz: "UTC".into(),
            pr_url: String::new(),
            commit_sha: String::new(),
            artifact_digest: String::new(),
            contributors: Vec::new(),
            risk: RiskAnswers::default(),
        }
    }

    /// Tidies what people typed: service names lowercased and deduplicated,
    /// contributors deduplicated and never the author (`author` is their
    /// username), environments in promotion order, text trimmed at the ends.
    pub fn normalized(mut self, author: &str) -> ChangeContent {
        self.title = self.title.trim().to_owned();
        let mut services: Vec<String> = Vec::new();
        for s in &self.services {
            let s = normalize_service(s).unwrap_or_else(|| s.trim().to_owned());
            if !s.is_empty() && !services.contains(&s) {
                services.push(s);
            }
        }
        self.services = services;
        let mut contributors: Vec<String> = self
            .contributors
            .iter()
            .map(|s| s.trim().to_lowercase())
            .filter(|s| !s.is_empty() && s != author)
            .collect();
        contributors.sort();
        contributors.dedup();
        self.contributors = contributors;
        self.environments.sort();
        self.environments.dedup();
        self.test_evidence = self
            .test_evidence
            .iter()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        self.commit_sha = self.commit_sha.trim().to_lowercase();
        self.artifact_digest = self.artifact_digest.trim().to_owned();
        self.pr_url = self.pr_url.trim().to_owned();
        self
    }

    pub fn targets_prod(&self) -> bool {
        self.environments.contains(&Environment::Prod)
    }

    /// Checks that hold for every save, a draft included: sizes, formats,
    /// the window's order and the risk answers' range.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        for (field, max) in LIMITS {
            if self.text(field).chars().count() > max {
                errors.push(err(field, format!("At most {max} characters.")));
            }
        }
        if self.services.len() > 20 {
            errors.push(err("services", "At most 20 services."));
        }
        if let Some(bad) = self
            .services
            .iter()
            .find(|s| normalize_service(s).as_deref() != Some(s.as_str()))
        {
            errors.push(err(
                "services",
                format!(
                    "{} is not a service name: use lowercase letters, digits, '.', '_' or '-'.",
                    text::quoted(bad)
                ),
            ));
        }
        if let (Some(start), Some(end)) = (self.window_start, self.window_end)
            && end <= start
        {
            errors.push(err("window_end", "The window must end after it starts."));
        }
        if !self.pr_url.is_empty() && !is_link(&self.pr_url) {
            errors.push(err("pr_url", "Give the pull request as an http(s) link."));
        }
        if let Some(bad) = self.test_evidence.iter().find(|l| !is_link(l)) {
            errors.push(err(
                "test_evidence",
                format!("{} is not an http(s) link.", text::quoted(bad)),
            ));
        }
        if self.test_evidence.len() > 20 {
            errors.push(err("test_evidence", "At most 20 evidence links."));
        }
        let sha_ok = (7..=64).contains(&self.commit_sha.len())
            && self.commit_sha.chars().all(|c| c.is_ascii_hexdigit());
        if !self.commit_sha.is_empty() && !sha_ok {
            errors.push(err(
                "commit_sha",
                "A commit SHA is 7 to 64 hexadecimal characters.",
            ));
        }
        if !self.artifact_digest.is_empty() {
            let ok = self
                .artifact_digest
                .split_once(':')
                .is_some_and(|(algo, hex)| {
                    !algo.is_empty()
                        && algo.chars().all(|c| c.is_ascii_alphanumeric())
                        && hex.len() >= 32
                        && hex.len() <= 128
                        && hex.chars().all(|c| c.is_ascii_hexdigit())
                });
            if !ok {
                errors.push(err(
                    "artifact_digest",
                    "An artifact digest looks like sha256:<hex>.",
                ));
            }
        }
        if self.contributors.len() > 20 {
            errors.push(err("contributors", "At most 20 contributors."));
        }
        for (field, message) in answer_errors(&self.risk) {
            errors.push(err(field, message));
        }
        // A field refused for its characters is told that alone, first.
        let characters = self.character_errors();
        errors.retain(|e| characters.iter().all(|c| c.field != e.field));
        characters.into_iter().chain(errors).collect()
    }

    /// Characters no field may hold (see [`text`]), checked over every
    /// field of [`fields`](Self::fields), so a field added later is checked
    /// too. Free text refuses control characters; the fields people tell
    /// changes apart by (the title, service and contributor names, the
    /// window's zone) also refuse invisible formatting characters.
    fn character_errors(&self) -> Vec<FieldError> {
        const NAMES: [&str; 4] = ["title", "services", "contributors", "window_tz"];
        self.fields()
            .into_iter()
            .filter_map(|(field, value)| {
                if NAMES.contains(&field) {
                    text::check_name(field, &value).err()
                } else {
                    text::check_text(field, &value).err()
                }
            })
            .collect()
    }

    /// What [`SUBMISSION_FIELDS`] asks of `field` that this change lacks,
    /// or `None` when it has it (or the field is not one of them).
    fn missing(&self, field: &str) -> Option<&'static str> {
        let blank = |t: &str| t.trim().is_empty();
        let lacks = match field {
            "environments" => self.environments.is_empty(),
            "rollback_plan" => self.targets_prod() && blank(&self.rollback_plan),
            "window_start" => self.window_start.is_none(),
            "window_end" => self.window_end.is_none(),
            _ => blank(self.text(field)),
        };
        let message = match field {
            "title" => "A title is required.",
            "description" => "Describe what changes.",
            "justification" => "Give the business justification.",
            "environments" => "Choose at least one target environment.",
            "implementation_plan" => "Describe how the change will be implemented.",
            "test_plan" => "Describe how the change is tested.",
            "rollback_plan" => "A change that reaches PROD needs a rollback plan.",
            "window_start" => "Give the planned window's start.",
            "window_end" => "Give the planned window's end.",
            _ => return None,
        };
        lacks.then_some(message)
    }

    /// What a change needs before it can be submitted, on top of
    /// [`validate`](Self::validate): every field of [`SUBMISSION_FIELDS`].
    /// A field already refused by `validate` is not named twice. The
    /// written parts that are always required are named first, then the
    /// rest, each in form order.
    pub fn validate_for_submission(&self) -> Vec<FieldError> {
        let mut errors = self.validate();
        let always_written = |f: &&str| {
            !matches!(
                *f,
                "environments" | "rollback_plan" | "window_start" | "window_end"
            )
        };
        let (written, rest): (Vec<&str>, Vec<&str>) =
            SUBMISSION_FIELDS.into_iter().partition(always_written);
        for field in written.into_iter().chain(rest) {
            if errors.iter().any(|e| e.field == field) {
                continue;
            }
            if let Some(message) = self.missing(field) {
                errors.push(err(field, message));
            }
        }
        errors
    }

    /// Every field as (name, shown value), in form order: the basis of
    /// revision diffs.
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        let when = |t: &Option<DateTime<Utc>>| {
            t.map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
                .unwrap_or_default()
        };
        let levels = [
            (self.test_levels.unit, "unit"),
            (self.test_levels.integration, "integration"),
            (self.test_levels.system, "system"),
            (self.test_levels.acceptance, "acceptance"),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, n)| *n)
        .collect::<Vec<_>>()
        .join(", ");
        let r = &self.risk;
        let yes = |b: bool| if b { "yes" } else { "no" };
        vec![
            ("title", self.title.clone()),
            ("description", self.description.clone()),
            ("justification", self.justification.clone()),
            ("type", self.change_type.label().to_owned()),
            ("category", self.category.label().to_owned()),
            ("priority", self.priority.label().to_owned()),
            ("services", self.services.join(", ")),
            (
                "environments",
                self.environments
                    .iter()
                    .map(|e| e.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            ("implementation_plan", self.implementation_plan.clone()),
            ("test_plan", self.test_plan.clone()),
            ("test_levels", levels),
            ("test_evidence", self.test_evidence.join("\n")),
            ("rollback_plan", self.rollback_plan.clone()),
            ("window_start", when(&self.window_start)),
            ("window_end", when(&self.window_end)),
            ("window_tz", self.window_tz.clone()),
            ("pr_url", self.pr_url.clone()),
            ("commit_sha", self.commit_sha.clone()),
            ("artifact_digest", self.artifact_digest.clone()),
            ("contributors", self.contributors.join(", ")),
            ("impact", r.impact.to_string()),
            ("likelihood", r.likelihood.to_string()),
            (
                "touches_production_data",
                yes(r.touches_production_data).into(),
            ),
            ("customer_facing", yes(r.customer_facing).into()),
            (
                "changes_security_control",
                yes(r.changes_security_control).into(),
            ),
            ("rollback_untested", yes(r.rollback_untested).into()),
            ("outside_usual_window", yes(r.outside_usual_window).into()),
        ]
    }
}

/// The name people know a field of [`ChangeContent::fields`] by (the form's
/// label); `None` for a name that is not a field.
pub fn field_label(field: &str) -> Option<&'static str> {
    Some(match field {
        "title" => "Title",
        "description" => "Description",
        "justification" => "Business justification",
        "type" => "Type",
        "category" => "Category",
        "priority" => "Priority",
        "services" => "Affected services",
        "environments" => "Target environments",
        "implementation_plan" => "Implementation plan",
        "test_plan" => "Test plan",
        "test_levels" => "Testing levels",
        "test_evidence" => "Test evidence",
        "rollback_plan" => "Rollback plan",
        "window_start" => "Window start",
        "window_end" => "Window end",
        "window_tz" => "Window UTC offset",
        "pr_url" => "Pull request",
        "commit_sha" => "Commit SHA",
        "artifact_digest" => "Artifact digest",
        "contributors" => "Contributors",
        "impact" => "Impact",
        "likelihood" => "Likelihood",
        "touches_production_data" => "Touches production data",
        "customer_facing" => "Customer-facing",
        "changes_security_control" => "Changes a security control",
        "rollback_untested" => "Rollback impossible or untested",
        "outside_usual_window" => "Outside a usual window",
        _ => return None,
    })
}

/// Fields by the names people know them by, as a list in a sentence:
/// "the title", "window start and window end"; "nothing" for none.
pub fn field_names(fields: &[&str]) -> String {
    let names: Vec<String> = fields
        .iter()
        .map(|f| {
            let label = field_label(f).unwrap_or("another field");
            let mut chars = label.chars();
            match chars.next() {
                Some(first) => first.to_lowercase().chain(chars).collect(),
                None => String::new(),
            }
        })
        .collect();
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        Some((last, _)) => last.clone(),
        None => "nothing".into(),
    }
}

/// The number people know a change by, written `CHG-<n>`. Read from
/// `CHG-<n>`, `chg-<n>` or the bare number; `<n>` is decimal digits only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChangeKey(pub i64);

impl fmt::Display for ChangeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CHG-{}", self.0)
    }
}

/// Text that is not a change number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotAChangeKey;

impl fmt::Display for NotAChangeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a change number (CHG-<n>)")
    }
}

impl std::error::Error for NotAChangeKey {}

impl FromStr for ChangeKey {
    type Err = NotAChangeKey;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = s
            .strip_prefix("CHG-")
            .or_else(|| s.strip_prefix("chg-"))
            .unwrap_or(s);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(NotAChangeKey);
        }
        digits.parse().map(ChangeKey).map_err(|_| NotAChangeKey)
    }
}

/// One field that differs between two revisions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    pub field: String,
    pub before: String,
    pub after: String,
}

pub fn diff(before: &ChangeContent, after: &ChangeContent) -> Vec<FieldChange> {
    before
        .fields()
        .into_iter()
        .zip(after.fields())
        .filter(|((_, a), (_, b))| a != b)
        .map(|((field, a), (_, b))| FieldChange {
            field: field.to_owned(),
            before: a,
            after: b,
        })
        .collect()
}

/// The facts about a change that its rules need.
#[derive(Debug, Clone)]
pub struct ChangeFacts {
    pub state: ChangeState,
    pub author: Uuid,
    pub contributors: Vec<Uuid>,
    /// Everyone who has written a security assessment of it (any revision).
    pub assessors: Vec<Uuid>,
    /// Everyone who has cast a CAB vote on it (any revision).
    pub voters: Vec<Uuid>,
}

impl ChangeFacts {
    /// The author and contributors: the people who may not decide on it.
    pub fn is_author(&self, who: Uuid) -> bool {
        self.author == who || self.contributors.contains(&who)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeAction {
    Edit,
    Submit,
    Withdraw,
    Cancel,
    Comment,
}

impl ChangeAction {
    pub const ALL: [ChangeAction; 5] = [
        ChangeAction::Edit,
        ChangeAction::Submit,
        ChangeAction::Withdraw,
        ChangeAction::Cancel,
        ChangeAction::Comment,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChangeAction::Edit => "change.edit",
            ChangeAction::Submit => "change.submit",
            ChangeAction::Withdraw => "change.withdraw",
            ChangeAction::Cancel => "change.cancel",
            ChangeAction::Comment => "change.comment",
        }
    }
}

/// Filing a change is an engineer's job (a pipeline may hold the role too).
pub fn check_create(actor: &Actor) -> Result<(), Denial> {
    if actor.roles.contains(Role::Engineer) {
        Ok(())
    } else {
        Err(Denial::new(
            "engineer_required",
            "Only engineers file change requests.",
        ))
    }
}

/// Who a new change's author is. A person files their own changes; a
/// pipeline (service account) files a change on behalf of a named person,
/// who is then its author, so that separation of duties binds the person
/// who wrote the change and not the pipeline that carried it. `person` is
/// the named person's account: (actor, active).
pub fn filing_author<'a>(
    filer: &'a Actor,
    on_behalf_of: Option<(&'a Actor, bool)>,
) -> Result<&'a Actor, Denial> {
    match (filer.is_service, on_behalf_of) {
        (false, None) => Ok(filer),
        (false, Some((person, _))) if person.id == filer.id => Ok(filer),
        (false, Some(_)) => Err(Denial::new(
            "on_behalf_of_not_allowed",
            "Only pipelines file changes on someone's behalf; file your own change yourself.",
        )),
        (true, None) => Err(Denial::new(
            "on_behalf_of_required",
            "A change filed by a pipeline names the person it is filed for (on_behalf_of): that person is its author.",
        )),
        (true, Some((person, active))) => {
            if person.is_service || !active {
                return Err(Denial::new(
                    "on_behalf_of_invalid",
                    "A change is filed on behalf of an active person, not a service account.",
                ));
            }
            check_create(person)?;
            Ok(person)
        }
    }
}

/// Whether `actor` may take `action` on the change, and the state it leads
/// to. Every surface calls this one function; submitting, withdrawing and
/// cancelling are the lifecycle's events (see [`crate::lifecycle::next`]).
pub fn check_action(
    change: &ChangeFacts,
    actor: &Actor,
    action: ChangeAction,
) -> Result<ChangeState, Denial> {
    use crate::lifecycle::{Event, Subject, next};
    let event = match action {
        ChangeAction::Comment => {
            check_commenter(actor)?;
            return Ok(change.state);
        }
        ChangeAction::Edit => {
            check_authorship(change, actor)?;
            if change.state.is_closed() {
                return Err(closed(change.state));
            }
            if let Some(d) = deployed(change.state) {
                return Err(d);
            }
            return Ok(change.state);
        }
        ChangeAction::Submit => Event::Submit { standard: None },
        ChangeAction::Withdraw => Event::Withdraw,
        ChangeAction::Cancel => Event::Cancel,
    };
    // The state these lead to depends neither on the type nor on the revision.
    let subject = Subject {
        facts: change,
        change_type: ChangeType::Normal,
        revision: 0,
    };
    next(&subject, actor, &event, DateTime::UNIX_EPOCH).map(|t| t.to)
}

/// Anyone who may change anything comments on a change, whatever its
/// state; an auditor, who reads everything and changes nothing, does not.
pub(crate) fn check_commenter(actor: &Actor) -> Result<(), Denial> {
    if actor.roles.may_act() {
        Ok(())
    } else {
        Err(Denial::new(
            "read_only",
            "Comments are for the people who work on changes; an auditor reads everything and changes nothing.",
        ))
    }
}

/// Only the change's author and contributors edit, submit or withdraw it.
pub(crate) fn check_authorship(change: &ChangeFacts, actor: &Actor) -> Result<(), Denial> {
    if change.is_author(actor.id) {
        Ok(())
    } else {
        Err(Denial::new(
            "not_author",
            "Only the change's author or its contributors can edit, submit or withdraw it.",
        ))
    }
}

/// The refusal for a change that is withdrawn, cancelled or rejected.
pub(crate) fn closed(state: ChangeState) -> Denial {
    Denial::new(
        "change_closed",
        format!(
            "This change is {} and can no longer change.",
            state.label().to_lowercase()
        ),
    )
}

/// The refusal for a change whose production deployment is under way or
/// done: what was deployed is on record as it was.
pub(crate) fn deployed(state: ChangeState) -> Option<Denial> {
    match state {
        ChangeState::Implementing => Some(Denial::new(
            "deployment_under_way",
            "This change is being deployed to production; it cannot change until the deployment has finished.",
        )),
        ChangeState::Implemented => Some(Denial::new(
            "change_deployed",
            "This change has been deployed to production and is on record as it was; file a new change for anything more.",
        )),
        _ => None,
    }
}

/// A complete change for tests of this crate.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;
    use crate::risk::RiskAnswers;

    pub fn complete() -> ChangeContent {
        ChangeContent {
            title: "Upgrade TLS library".into(),
            description: "Move to the patched release.".into(),
            justification: "Fixes a published vulnerability.".into(),
            change_type: ChangeType::Normal,
            category: Category::SecurityPatch,
            priority: Priority::High,
            services: vec!["payments-api".into()],
            environments: vec![Environment::Stage, Environment::Prod],
            implementation_plan: "Roll the new image.".into(),
            test_plan: "Unit and integration suites; smoke test on STAGE.".into(),
            test_levels: TestLevels {
                unit: true,
                integration: true,
                system: false,
                acceptance: false,
            },
            test_evidence: vec!["https://ci.example/run/1".into()],
            rollback_plan: "Redeploy the previous image.".into(),
            window_start: "2026-12-01T10:00:00Z".parse().ok(),
            window_end: "2026-12-01T11:00:00Z".parse().ok(),
            window_tz: "Europe/Berlin".into(),
            pr_url: "https://git.example/pr/42".into(),
            commit_sha: "0123abcd".into(),
            artifact_digest: format!("sha256:{}", "a".repeat(64)),
            contributors: vec![],
            risk: RiskAnswers {
                impact: 2,
                likelihood: 2,
                ..RiskAnswers::default()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::complete;
    use super::*;

    fn fields(errors: &[FieldError]) -> Vec<&str> {
        errors.iter().map(|e| e.field).collect()
    }

    #[test]
    fn every_limit_is_exact() {
        for (field, max) in LIMITS {
            let set = |c: &mut ChangeContent, v: String| match field {
                "title" => c.title = v,
                "description" => c.description = v,
                "justification" => c.justification = v,
                "implementation_plan" => c.implementation_plan = v,
                "test_plan" => c.test_plan = v,
                _ => c.rollback_plan = v,
            };
            let mut c = complete();
            set(&mut c, "x".repeat(max));
            assert!(c.validate().is_empty(), "{field} at {max}");
            set(&mut c, "x".repeat(max + 1));
            assert_eq!(fields(&c.validate()), vec![field], "{field} over {max}");
        }
        let mut c = complete();
        c.services = (0..20).map(|i| format!("svc-{i}")).collect();
        c.test_evidence = (0..20)
            .map(|i| format!("https://ci.example.com/{i}"))
            .collect();
        c.contributors = (0..20).map(|i| format!("person{i}")).collect();
        assert!(c.validate().is_empty());
        c.services.push("svc-20".into());
        c.test_evidence.push("https://ci.example.com/20".into());
        c.contributors.push("person20".into());
        assert_eq!(
            fields(&c.validate()),
            vec!["services", "test_evidence", "contributors"]
        );
    }

    #[test]
    fn service_names_and_links_have_exact_shapes() {
        assert_eq!(normalize_service(" Edge-Proxy "), Some("edge-proxy".into()));
        assert_eq!(normalize_service(&"a".repeat(64)), Some("a".repeat(64)));
        assert_eq!(normalize_service(&"a".repeat(65)), None);
        assert_eq!(normalize_service("edge proxy"), None);
        assert_eq!(normalize_service(""), None);
        assert!(is_link("http://a.bc"));
        assert!(!is_link("http://a.b"), "ten characters are too short");
        assert!(!is_link("https://example.com/a b"));
        assert!(!is_link(&format!("https://{}", "a".repeat(1993))));
        assert!(is_link(&format!("https://{}", "a".repeat(1992))));
    }

    #[test]
    fn a_missing_field_is_named_whatever_else_is_wrong() {
        let mut c = complete();
        c.description.clear();
        c.commit_sha = "xyz".into();
        let found = c.validate_for_submission();
        let errors = fields(&found);
        assert!(errors.contains(&"description"), "{errors:?}");
        assert!(errors.contains(&"commit_sha"), "{errors:?}");
        let mut c = complete();
        c.rollback_plan = "x".repeat(20_001);
        assert_eq!(
            fields(&c.validate_for_submission()),
            vec!["rollback_plan"],
            "too long, and named once"
        );
    }

    #[test]
    fn approved_and_rejected_are_the_decided_states() {
        for s in ChangeState::ALL {
            assert_eq!(
                s.is_decided(),
                matches!(s, ChangeState::Approved | ChangeState::Rejected),
                "{s:?}"
            );
        }
    }

    #[test]
    fn a_complete_change_can_be_submitted() {
        assert_eq!(complete().validate_for_submission(), vec![]);
    }

    #[test]
    fn unanswered_risk_names_impact_and_likelihood() {
        let mut c = complete();
        c.risk.impact = 0;
        c.risk.likelihood = 0;
        let errors = c.validate();
        let named = fields(&errors);
        assert!(
            named.contains(&"impact") && named.contains(&"likelihood"),
            "{named:?}"
        );
    }

    #[test]
    fn each_submission_rule_names_its_field() {
        type Mutation = Box<dyn Fn(&mut ChangeContent)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (Box::new(|c| c.title = "  ".into()), "title"),
            (Box::new(|c| c.rollback_plan.clear()), "rollback_plan"),
            (
                Box::new(|c| c.window_end = "2026-12-01T09:00:00Z".parse().ok()),
                "window_end",
            ),
            (Box::new(|c| c.window_start = None), "window_start"),
            (Box::new(|c| c.environments.clear()), "environments"),
            (Box::new(|c| c.description.clear()), "description"),
            (Box::new(|c| c.justification.clear()), "justification"),
            (Box::new(|c| c.test_plan.clear()), "test_plan"),
            (
                Box::new(|c| c.implementation_plan.clear()),
                "implementation_plan",
            ),
            (
                Box::new(|c| c.pr_url = "javascript:alert(1)".into()),
                "pr_url",
            ),
            (Box::new(|c| c.commit_sha = "xyz".into()), "commit_sha"),
            (
                Box::new(|c| c.artifact_digest = "latest".into()),
                "artifact_digest",
            ),
            (
                Box::new(|c| c.artifact_digest = "sha256:zz".into()),
                "artifact_digest",
            ),
            (
                Box::new(|c| c.artifact_digest = format!("sha256:{}", "z".repeat(64))),
                "artifact_digest",
            ),
            (
                Box::new(|c| c.artifact_digest = format!("sha256:{}", "a".repeat(31))),
                "artifact_digest",
            ),
            (
                Box::new(|c| c.artifact_digest = format!("sha256:{}", "a".repeat(129))),
                "artifact_digest",
            ),
            (
                Box::new(|c| c.artifact_digest = format!(":{}", "a".repeat(64))),
                "artifact_digest",
            ),
            (
                Box::new(|c| c.artifact_digest = format!("sha-256:{}", "a".repeat(64))),
                "artifact_digest",
            ),
            (
                Box::new(|c| c.services = vec!["Bad Service".into()]),
                "services",
            ),
            (Box::new(|c| c.risk.impact = 7), "impact"),
            (Box::new(|c| c.title = "x".repeat(201)), "title"),
        ];
        for (mutate, field) in cases {
            let mut c = complete();
            mutate(&mut c);
            assert_eq!(fields(&c.validate_for_submission()), vec![field]);
        }
    }

    #[test]
    fn no_field_holds_a_control_character() {
        type Mutation = fn(&mut ChangeContent, String);
        let cases: [(Mutation, &str); 15] = [
            (|c, v| c.title = v, "title"),
            (|c, v| c.description = v, "description"),
            (|c, v| c.justification = v, "justification"),
            (|c, v| c.services = vec![v], "services"),
            (|c, v| c.implementation_plan = v, "implementation_plan"),
            (|c, v| c.test_plan = v, "test_plan"),
            (|c, v| c.test_evidence = vec![v], "test_evidence"),
            (|c, v| c.rollback_plan = v, "rollback_plan"),
            (|c, v| c.window_tz = v, "window_tz"),
            (|c, v| c.pr_url = v, "pr_url"),
            (|c, v| c.commit_sha = v, "commit_sha"),
            (|c, v| c.artifact_digest = v, "artifact_digest"),
            (|c, v| c.contributors = vec![v], "contributors"),
            (|c, v| c.title = format!("{v} and more"), "title"),
            (
                |c, v| c.description = format!("line one\n{v}"),
                "description",
            ),
        ];
        for control in ['\0', '\u{1}', '\u{1b}', '\u{7f}', '\u{9b}'] {
            for (mutate, field) in cases {
                let mut c = complete();
                mutate(&mut c, format!("https://x.example/a{control}b"));
                let errors = c.validate();
                assert_eq!(errors.first().map(|e| e.field), Some(field), "{control:?}");
                assert!(
                    errors[0].message.contains("control character"),
                    "{field}: {}",
                    errors[0].message
                );
                assert!(
                    errors.iter().filter(|e| e.field == field).count() == 1,
                    "one message per field: {errors:?}"
                );
            }
        }
    }

    #[test]
    fn titles_and_names_refuse_disguising_characters_free_text_keeps_them() {
        let mut c = complete();
        c.title = "Update invoice\u{202E}fdp.exe".into();
        c.services = vec!["pay\u{200B}ments".into()];
        c.contributors = vec!["ann\u{2066}".into()];
        c.description = "Hebrew \u{200F}עברית\u{200F} with marks is fine here.".into();
        let errors = c.validate();
        assert_eq!(fields(&errors), vec!["title", "services", "contributors"]);
        assert!(errors[0].message.contains("U+202E RIGHT-TO-LEFT OVERRIDE"));
        assert!(errors[1].message.contains("U+200B ZERO WIDTH SPACE"));
    }

    #[test]
    fn rollback_plan_is_only_required_for_prod() {
        let mut c = complete();
        c.rollback_plan.clear();
        c.environments = vec![Environment::Dev, Environment::Test];
        assert_eq!(c.validate_for_submission(), vec![]);
    }

    #[test]
    fn a_draft_may_be_incomplete_but_not_malformed() {
        let mut c = complete();
        c.title.clear();
        c.window_start = None;
        assert_eq!(c.validate(), vec![]);
        c.commit_sha = "nothex!".into();
        assert_eq!(fields(&c.validate()), vec!["commit_sha"]);
    }

    #[test]
    fn every_field_has_a_label() {
        for (field, _) in complete().fields() {
            assert!(field_label(field).is_some(), "{field}");
        }
        assert_eq!(field_label("window_start"), Some("Window start"));
        assert_eq!(field_label("nonsense"), None);
    }

    #[test]
    fn diff_lists_changed_fields_only() {
        let a = complete();
        let mut b = complete();
        b.title = "Upgrade TLS library to 3.1".into();
        b.environments.push(Environment::Test);
        let d = diff(&a, &b);
        assert_eq!(
            d.iter().map(|f| f.field.as_str()).collect::<Vec<_>>(),
            vec!["title", "environments"]
        );
        assert_eq!(d[0].before, "Upgrade TLS library");
        assert!(diff(&a, &a).is_empty());
    }

    fn actor(id: u128, roles: &[Role]) -> Actor {
        Actor {
            id: Uuid::from_u128(id),
            roles: roles.iter().copied().collect(),
            is_service: false,
        }
    }

    #[test]
    fn every_transition_for_every_kind_of_actor() {
        use ChangeAction::*;
        use ChangeState::*;
        let author = actor(1, &[Role::Engineer]);
        let contributor = actor(2, &[Role::Engineer]);
        let stranger = actor(3, &[Role::Engineer]);
        let cab = actor(4, &[Role::CabMember]);
        let admin = actor(5, &[Role::Admin]);
        let mut bot = actor(6, &[Role::ReleaseManager]);
        bot.is_service = true;
        let facts = |state| ChangeFacts {
            state,
            author: author.id,
            contributors: vec![contributor.id],
            assessors: Vec::new(),
            voters: Vec::new(),
        };
        // A pipeline files for a person, who is the author; a person files alone.
        let mut pipeline = actor(20, &[Role::Engineer]);
        pipeline.is_service = true;
        let erin = actor(21, &[Role::Engineer]);
        let auditor = actor(22, &[Role::Auditor]);
        let nobody = actor(23, &[]);
        assert_eq!(
            filing_author(&pipeline, Some((&erin, true))).map(|a| a.id),
            Ok(erin.id)
        );
        for (on_behalf, code) in [
            (None, "on_behalf_of_required"),
            (Some((&erin, false)), "on_behalf_of_invalid"),
            (Some((&pipeline, true)), "on_behalf_of_invalid"),
            (Some((&auditor, true)), "engineer_required"),
        ] {
            assert_eq!(
                filing_author(&pipeline, on_behalf)
                    .map(|a| a.id)
                    .map_err(|d| d.code),
                Err(code)
            );
        }
        assert_eq!(filing_author(&erin, None).map(|a| a.id), Ok(erin.id));
        assert_eq!(
            filing_author(&erin, Some((&erin, true))).map(|a| a.id),
            Ok(erin.id)
        );
        assert_eq!(
            filing_author(&erin, Some((&auditor, true)))
                .map(|a| a.id)
                .map_err(|d| d.code),
            Err("on_behalf_of_not_allowed")
        );
        // (who, state, action, expected next state or denial code)
        let table: Vec<(&Actor, ChangeState, ChangeAction, Result<ChangeState, &str>)> = vec![
            (&author, Draft, Edit, Ok(Draft)),
            (&contributor, Draft, Edit, Ok(Draft)),
            (&stranger, Draft, Edit, Err("not_author")),
            (&cab, Draft, Edit, Err("not_author")),
            (&admin, Draft, Edit, Err("not_author")),
            (&author, Submitted, Edit, Ok(Submitted)),
            (&author, Withdrawn, Edit, Err("change_closed")),
            (&author, Cancelled, Edit, Err("change_closed")),
            (&author, Draft, Submit, Ok(Submitted)),
            (&contributor, Draft, Submit, Ok(Submitted)),
            (&stranger, Draft, Submit, Err("not_author")),
            (&admin, Draft, Submit, Err("not_author")),
            (&author, Submitted, Submit, Err("invalid_transition")),
            (&author, ChangesRequested, Submit, Ok(Submitted)),
            (&contributor, ChangesRequested, Edit, Ok(ChangesRequested)),
            (&author, Approved, Edit, Ok(Approved)),
            (&author, InCabReview, Withdraw, Ok(Withdrawn)),
            (&author, Approved, Withdraw, Err("invalid_transition")),
            (&author, Rejected, Edit, Err("change_closed")),
            (&cab, Approved, Cancel, Ok(Cancelled)),
            (&cab, Rejected, Cancel, Err("change_closed")),
            (&author, Withdrawn, Submit, Err("change_closed")),
            (&author, Draft, Withdraw, Ok(Withdrawn)),
            (&author, Submitted, Withdraw, Ok(Withdrawn)),
            (&contributor, Submitted, Withdraw, Ok(Withdrawn)),
            (&stranger, Submitted, Withdraw, Err("not_author")),
            (&cab, Submitted, Withdraw, Err("not_author")),
            (&author, Cancelled, Withdraw, Err("change_closed")),
            (&cab, Submitted, Cancel, Ok(Cancelled)),
            (&admin, Draft, Cancel, Ok(Cancelled)),
            (&author, Submitted, Cancel, Err("cancel_not_allowed")),
            (&stranger, Submitted, Cancel, Err("cancel_not_allowed")),
            (&bot, Submitted, Cancel, Err("cancel_not_allowed")),
            (&cab, Withdrawn, Cancel, Err("change_closed")),
            (&stranger, Submitted, Comment, Ok(Submitted)),
            (&bot, Cancelled, Comment, Ok(Cancelled)),
            (&auditor, Submitted, Comment, Err("read_only")),
            (&nobody, Submitted, Comment, Err("read_only")),
        ];
        for (who, state, action, expected) in table {
            let got = check_action(&facts(state), who, action).map_err(|d| d.code);
            assert_eq!(got, expected, "{:?} {action:?} on {state:?}", who.roles);
        }
    }

    #[test]
    fn only_engineers_file_changes() {
        assert!(check_create(&actor(1, &[Role::Engineer])).is_ok());
        for role in [
            Role::CabMember,
            Role::Admin,
            Role::Auditor,
            Role::SecurityReviewer,
            Role::ReleaseManager,
        ] {
            assert_eq!(
                check_create(&actor(1, &[role])).unwrap_err().code,
                "engineer_required"
            );
        }
    }

    #[test]
    fn change_keys_read_and_write_as_chg_numbers() {
        let cases: [(&str, Option<i64>); 12] = [
            ("CHG-12", Some(12)),
            ("chg-12", Some(12)),
            ("12", Some(12)),
            ("CHG-0", Some(0)),
            ("CHG-9223372036854775807", Some(i64::MAX)),
            ("CHG-9223372036854775808", None),
            ("CHG-", None),
            ("", None),
            ("CHG-x", None),
            ("-5", None),
            ("+5", None),
            ("Chg-12", None),
        ];
        for (raw, number) in cases {
            assert_eq!(
                raw.parse::<ChangeKey>().ok(),
                number.map(ChangeKey),
                "{raw:?}"
            );
        }
        assert_eq!(ChangeKey(12).to_string(), "CHG-12");
        assert_eq!("x".parse::<ChangeKey>(), Err(NotAChangeKey));
        assert_eq!(NotAChangeKey.to_string(), "not a change number (CHG-<n>)");
    }

    #[test]
    fn a_blank_change_is_an_empty_normal_feature() {
        let b = ChangeContent::blank();
        assert_eq!(b.change_type, ChangeType::Normal);
        assert_eq!(b.category, Category::Feature);
        assert_eq!(b.priority, Priority::Medium);
        assert_eq!(b.window_tz, "UTC");
        assert_eq!(b.test_levels, TestLevels::default());
        assert_eq!(b.risk, RiskAnswers::default());
        assert!(
            b.validate()
                .iter()
                .all(|e| ["impact", "likelihood"].contains(&e.field))
        );
        let errors = b.validate_for_submission();
        let named: Vec<&str> = fields(&errors);
        for field in SUBMISSION_FIELDS
            .into_iter()
            .filter(|f| *f != "rollback_plan")
        {
            assert!(named.contains(&field), "{field}: {named:?}");
        }
        for (field, value) in b.fields() {
            if ![
                "type",
                "category",
                "priority",
                "window_tz",
                "impact",
                "likelihood",
            ]
            .contains(&field)
                && !value.starts_with("no")
            {
                assert!(value.is_empty(), "{field} = {value:?}");
            }
        }
    }

    #[test]
    fn normalizing_tidies_what_people_typed() {
        let mut c = complete();
        c.title = "  Upgrade  ".into();
        c.services = vec![
            " Edge-Proxy ".into(),
            "edge-proxy".into(),
            "  ".into(),
            "Bad Name".into(),
        ];
        c.contributors = vec![
            " Bob ".into(),
            "erin".into(),
            "bob".into(),
            "".into(),
            "amy".into(),
        ];
        c.environments = vec![Environment::Prod, Environment::Dev, Environment::Prod];
        c.test_evidence = vec![" https://ci.example/1 ".into(), " ".into()];
        c.commit_sha = " ABCDEF1 ".into();
        c.artifact_digest = " sha256:ab ".into();
        c.pr_url = " https://git.example/pr/1 ".into();
        c.description = "  kept as written  ".into();
        let n = c.normalized("erin");
        assert_eq!(n.title, "Upgrade");
        assert_eq!(n.services, vec!["edge-proxy", "Bad Name"]);
        assert_eq!(n.contributors, vec!["amy", "bob"]);
        assert_eq!(n.environments, vec![Environment::Dev, Environment::Prod]);
        assert_eq!(n.test_evidence, vec!["https://ci.example/1"]);
        assert_eq!(n.commit_sha, "abcdef1");
        assert_eq!(n.artifact_digest, "sha256:ab");
        assert_eq!(n.pr_url, "https://git.example/pr/1");
        assert_eq!(n.description, "  kept as written  ");
    }

    #[test]
    fn field_names_read_as_a_list_in_a_sentence() {
        assert_eq!(field_names(&[]), "nothing");
        assert_eq!(field_names(&["title"]), "title");
        assert_eq!(
            field_names(&["window_start", "window_end"]),
            "window start and window end"
        );
        assert_eq!(
            field_names(&["pr_url", "services", "later"]),
            "pull request, affected services and another field"
        );
    }

    #[test]
    fn submission_names_the_written_parts_first_then_the_rest_in_form_order() {
        let mut c = ChangeContent::blank();
        c.risk = complete().risk;
        c.environments = vec![];
        assert_eq!(
            fields(&c.validate_for_submission()),
            vec![
                "title",
                "description",
                "justification",
                "implementation_plan",
                "test_plan",
                "environments",
                "window_start",
                "window_end",
            ]
        );
        c.environments = vec![Environment::Prod];
        assert_eq!(
            fields(&c.validate_for_submission())[5..],
            ["rollback_plan", "window_start", "window_end"]
        );
        // Each field the submission asks for is named by it, with its own sentence.
        let mut none = c.clone();
        none.environments.clear();
        let errors = [c.validate_for_submission(), none.validate_for_submission()].concat();
        let mut messages = Vec::new();
        for field in SUBMISSION_FIELDS {
            let found = errors.iter().find(|e| e.field == field).expect(field);
            messages.push(found.message.clone());
        }
        messages.dedup();
        assert_eq!(messages.len(), SUBMISSION_FIELDS.len());
        assert_eq!(complete().missing("title"), None);
        assert_eq!(c.missing("pr_url"), None, "not a submission field");
    }
}
