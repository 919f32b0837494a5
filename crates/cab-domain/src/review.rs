//! How a change ends: closing it with a close code, and its
//! post-implementation review.
//!
//! A change that reached production is closed with the code that says how
//! it went; one that never reached production within its window is closed
//! as not implemented. A review is owed for every failed, emergency,
//! break-glass, high- or critical-risk change and for any change linked to
//! an incident (a setting can owe one for every change); others may have
//! one. At least one person who did not work on the change signs it off,
//! which locks what it says: a later edit is a new revision that is signed
//! off again.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::change::{ChangeFacts, ChangeState, ChangeType, FieldError};
use crate::risk::RiskLevel;
use crate::text::check_text;
use crate::{Actor, Denial, Role};

/// How many days after closing a review is due when no setting says.
pub const DEFAULT_DUE_DAYS: i64 = 5;
/// The most incidents and action items one review holds.
pub const MAX_INCIDENTS: usize = 20;
pub const MAX_ACTIONS: usize = 30;
const MAX_TEXT: usize = 4000;

vocabulary!(
    /// How a change ended.
    CloseCode {
        Successful = "successful" / "Successful",
        SuccessfulWithIssues = "successful_with_issues" / "Successful with issues",
        FailedRolledBack = "failed_rolled_back" / "Failed and rolled back",
        FailedNotRolledBack = "failed_not_rolled_back" / "Failed and not rolled back",
        NotImplemented = "not_implemented" / "Not implemented",
    }
);

impl CloseCode {
    pub fn failed(self) -> bool {
        matches!(
            self,
            CloseCode::FailedRolledBack | CloseCode::FailedNotRolledBack
        )
    }
}

vocabulary!(
    /// What it took to restore service after the change.
    Intervention {
        NoIntervention = "none" / "None",
        Rollback = "rollback" / "Rollback",
        Hotfix = "hotfix" / "Hotfix",
        ForwardFix = "forward_fix" / "Forward fix",
    }
);

vocabulary!(
    /// How bad an incident was.
    Severity {
        Sev1 = "sev1" / "Severity 1 (critical)",
        Sev2 = "sev2" / "Severity 2 (major)",
        Sev3 = "sev3" / "Severity 3 (minor)",
        Sev4 = "sev4" / "Severity 4 (low)",
    }
);

vocabulary!(
    /// Whether the change caused an incident.
    Causation {
        Confirmed = "confirmed" / "Confirmed",
        Suspected = "suspected" / "Suspected",
        RuledOut = "ruled_out" / "Ruled out",
    }
);

vocabulary!(
    /// Where an action item is.
    ActionStatus {
        Open = "open" / "Open",
        InProgress = "in_progress" / "In progress",
        Done = "done" / "Done",
    }
);

vocabulary!(
    /// Where a review is.
    ReviewState {
        Open = "open" / "Being written",
        SignedOff = "signed_off" / "Signed off",
    }
);

vocabulary!(
    /// Why a review is owed.
    ReviewReason {
        Failed = "failed" / "the change failed",
        Emergency = "emergency" / "it was an emergency change",
        BreakGlass = "break_glass" / "it was deployed through break-glass",
        HighRisk = "high_risk" / "its risk is high or critical",
        Incident = "incident" / "it is linked to an incident",
        Policy = "policy" / "every change is reviewed",
    }
);

/// An incident the review links to the change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    pub reference: String,
    pub severity: Severity,
    pub caused: Causation,
    pub started_at: DateTime<Utc>,
    /// `None` while service is not restored.
    pub restored_at: Option<DateTime<Utc>>,
}

/// What a review says. Every text is trimmed; an empty one is not yet
/// written.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ReviewContent {
    #[serde(default)]
    pub outcome: String,
    #[serde(default)]
    pub intervention: Option<Intervention>,
    #[serde(default)]
    pub incidents: Vec<Incident>,
    #[serde(default)]
    pub went_well: String,
    #[serde(default)]
    pub went_wrong: String,
    #[serde(default)]
    pub lessons: String,
}

impl ReviewContent {
    /// The content as stored: texts trimmed, times to the second.
    pub fn normalized(mut self) -> Self {
        for text in [
            &mut self.outcome,
            &mut self.went_well,
            &mut self.went_wrong,
            &mut self.lessons,
        ] {
            *text = text.trim().to_owned();
        }
        for incident in &mut self.incidents {
            incident.reference = incident.reference.trim().to_owned();
            incident.started_at = to_second(incident.started_at);
            incident.restored_at = incident.restored_at.map(to_second);
        }
        self
    }

    /// The faults of a draft, by form field. A draft may be incomplete; what
    /// it holds must make sense.
    pub fn validate(&self, now: DateTime<Utc>) -> Vec<FieldError> {
        let mut errors = Vec::new();
        for (field, text) in [
            ("outcome", &self.outcome),
            ("went_well", &self.went_well),
            ("went_wrong", &self.went_wrong),
            ("lessons", &self.lessons),
        ] {
            if text.chars().count() > MAX_TEXT {
                errors.push(err(field, format!("Keep this to {MAX_TEXT} characters.")));
            } else if let Err(e) = check_text(field, text) {
                errors.push(e);
            }
        }
        if self.incidents.len() > MAX_INCIDENTS {
            // Named once, not incident by incident.
            errors.push(err(
                "incidents",
                format!("A review links at most {MAX_INCIDENTS} incidents."),
            ));
            return errors;
        }
        for (i, incident) in self.incidents.iter().enumerate() {
            let n = i + 1;
            let mut fault = |message: &str| {
                errors.push(err("incidents", format!("Incident {n}: {message}")));
            };
            let len = incident.reference.chars().count();
            if len == 0 || len > 100 {
                fault("give its reference (1 to 100 characters).");
            } else if let Err(e) = check_text("incidents", &incident.reference) {
                fault(&e.message);
            }
            if !plausible(incident.started_at, now) {
                fault("its start must be a real time, not in the future.");
            }
            if let Some(restored) = incident.restored_at {
                if !plausible(restored, now) {
                    fault("the time service was restored must be a real time, not in the future.");
                } else if restored < incident.started_at {
                    fault("service cannot be restored before the incident started.");
                }
            }
        }
        errors
    }

    /// What is still missing before it can be signed off, by form field.
    pub fn missing(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if self.outcome.is_empty() {
            errors.push(err("outcome", "Say what the outcome was."));
        }
        if self.intervention.is_none() {
            errors.push(err(
                "intervention",
                "Say what intervention, if any, was needed.",
            ));
        }
        if self.lessons.is_empty() {
            errors.push(err(
                "lessons",
                "Write down the lessons learned (\"none\" is an answer).",
            ));
        }
        for (i, incident) in self.incidents.iter().enumerate() {
            if incident.restored_at.is_none() {
                errors.push(err(
                    "incidents",
                    format!("Incident {}: say when service was restored.", i + 1),
                ));
            }
        }
        errors
    }

    /// Whether an incident the change is confirmed or suspected to have
    /// caused is linked.
    pub fn links_incident(&self) -> bool {
        self.incidents
            .iter()
            .any(|i| i.caused != Causation::RuledOut)
    }

    /// The names of the fields that differ from `before`.
    pub fn diff(&self, before: &ReviewContent) -> Vec<&'static str> {
        let mut fields = Vec::new();
        if self.outcome != before.outcome {
            fields.push("outcome");
        }
        if self.intervention != before.intervention {
            fields.push("intervention");
        }
        if self.incidents != before.incidents {
            fields.push("incidents");
        }
        if self.went_well != before.went_well {
            fields.push("went_well");
        }
        if self.went_wrong != before.went_wrong {
            fields.push("went_wrong");
        }
        if self.lessons != before.lessons {
            fields.push("lessons");
        }
        fields
    }
}

fn err(field: &'static str, message: impl Into<String>) -> FieldError {
    FieldError {
        field,
        message: message.into(),
    }
}

fn to_second(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

/// Between the year 2000 and now (a minute's grace for clocks).
fn plausible(t: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    use chrono::Datelike;
    t.year() >= 2000 && t <= now + chrono::Duration::minutes(1)
}

/// The facts that decide whether a review is owed.
#[derive(Debug, Clone, Copy)]
pub struct Owed {
    pub change_type: ChangeType,
    /// The higher of the engineer's level and its current assessment's.
    pub risk: RiskLevel,
    pub close_code: Option<CloseCode>,
    pub break_glass: bool,
    /// An incident is linked: a break-glass names one, or the review links
    /// one the change caused or may have caused.
    pub incident: bool,
    /// The setting that owes a review for every change.
    pub all: bool,
}

/// Why a review is owed; empty when it is optional.
pub fn reasons(owed: &Owed) -> Vec<ReviewReason> {
    let mut reasons = Vec::new();
    if owed.close_code.is_some_and(CloseCode::failed) {
        reasons.push(ReviewReason::Failed);
    }
    if owed.change_type == ChangeType::Emergency {
        reasons.push(ReviewReason::Emergency);
    }
    if owed.break_glass {
        reasons.push(ReviewReason::BreakGlass);
    }
    if owed.risk >= RiskLevel::High {
        reasons.push(ReviewReason::HighRisk);
    }
    if owed.incident {
        reasons.push(ReviewReason::Incident);
    }
    // A change never implemented has nothing to review unless something
    // above says otherwise.
    if owed.all && reasons.is_empty() && owed.close_code != Some(CloseCode::NotImplemented) {
        reasons.push(ReviewReason::Policy);
    }
    reasons
}

/// Whether `code` fits what the record says of the change's production
/// deployments: a success cannot follow a failed deployment, a failure
/// needs a deployment, and "not implemented" means none reached production.
pub fn check_close_code(state: ChangeState, code: CloseCode) -> Result<(), Denial> {
    let fits = match state {
        ChangeState::Implemented => code != CloseCode::NotImplemented,
        ChangeState::ImplementationFailed => code.failed(),
        ChangeState::Approved => code == CloseCode::NotImplemented,
        _ => false,
    };
    if fits {
        return Ok(());
    }
    Err(match state {
        ChangeState::Implementing => Denial::new(
            "deployment_under_way",
            "Its production deployment is under way; close it once the deployment has ended.",
        ),
        ChangeState::Implemented | ChangeState::ImplementationFailed | ChangeState::Approved => {
            Denial::new(
                "close_code_mismatch",
                format!(
                    "This change cannot be closed as {}: {}",
                    code.label().to_lowercase(),
                    match state {
                        ChangeState::Implemented => {
                            "it reached production, so it was implemented."
                        }
                        ChangeState::ImplementationFailed => {
                            "its last production deployment failed; close it as failed, rolled back or not."
                        }
                        _ => "it never reached production; close it as not implemented.",
                    }
                ),
            )
        }
        ChangeState::Closed => Denial::new("change_closed", "This change is already closed."),
        s if s.is_closed() => crate::change::closed(s),
        _ => Denial::new(
            "not_approved",
            "Only an approved change is closed with a close code; withdraw or cancel one that was not approved.",
        ),
    })
}

/// Whether `code` fits the deployment record beyond the change's state:
/// `reached_production` when any production deployment of it ever started.
/// A change that ran in production was implemented, whatever happened to it
/// since; one that never did was not.
pub fn check_close_record(code: CloseCode, reached_production: bool) -> Result<(), Denial> {
    match (code == CloseCode::NotImplemented, reached_production) {
        (true, true) => Err(Denial::new(
            "close_code_mismatch",
            "This change cannot be closed as not implemented: a production deployment of it ran.",
        )),
        (false, false) => Err(Denial::new(
            "close_code_mismatch",
            format!(
                "This change cannot be closed as {}: it never reached production; close it as not implemented.",
                code.label().to_lowercase()
            ),
        )),
        _ => Ok(()),
    }
}

/// Whether the notes fit the code: any failure, issue or non-implementation
/// says what happened.
pub fn check_close_notes(code: CloseCode, notes: &str) -> Result<(), FieldError> {
    let n = notes.trim().chars().count();
    if n > MAX_TEXT {
        return Err(err(
            "notes",
            format!("Keep the notes to {MAX_TEXT} characters."),
        ));
    }
    if n == 0 && code != CloseCode::Successful {
        return Err(err(
            "notes",
            format!(
                "Say what happened: a change closed as {} needs notes.",
                code.label().to_lowercase()
            ),
        ));
    }
    check_text("notes", notes)
}

/// Who may close a change: its authors and contributors, CAB members,
/// release managers and administrators; never a pipeline.
pub fn check_close(change: &ChangeFacts, actor: &Actor) -> Result<(), Denial> {
    if actor.is_service {
        return Err(Denial::new(
            "service_account",
            "Service accounts report deployments; a person closes the change.",
        ));
    }
    let staff = [Role::CabMember, Role::ReleaseManager, Role::Admin]
        .iter()
        .any(|r| actor.roles.contains(*r));
    if change.is_author(actor.id) || staff {
        Ok(())
    } else {
        Err(Denial::new(
            "close_not_allowed",
            "Only the change's authors, CAB members, release managers and administrators close a change.",
        ))
    }
}

/// Who may write a review: anyone who worked on the change, CAB members,
/// release managers, security reviewers and administrators; and only once
/// the change was approved.
pub fn check_write(change: &ChangeFacts, actor: &Actor) -> Result<(), Denial> {
    check_writer(change, actor)?;
    check_reviewable(change)
}

/// Who may write a review, whatever the change's state.
pub fn check_writer(change: &ChangeFacts, actor: &Actor) -> Result<(), Denial> {
    if actor.is_service {
        return Err(Denial::new(
            "service_account",
            "Service accounts do not write reviews.",
        ));
    }
    let staff = [
        Role::CabMember,
        Role::ReleaseManager,
        Role::SecurityReviewer,
        Role::Admin,
    ]
    .iter()
    .any(|r| actor.roles.contains(*r));
    if !(change.is_author(actor.id) || staff) {
        return Err(Denial::new(
            "review_not_allowed",
            "Only the people who worked on the change, CAB members, release managers, security reviewers and administrators write its review.",
        ));
    }
    Ok(())
}

/// Whether the change's state lets a review be written: once it was
/// approved. (A review owed stays writable whatever comes next: the
/// caller knows whether one is owed.)
pub fn check_reviewable(change: &ChangeFacts) -> Result<(), Denial> {
    if !(change.state.carries_approval() || change.state == ChangeState::Closed) {
        return Err(Denial::new(
            "not_reviewable",
            format!(
                "This change is {}; a change is reviewed once it was approved.",
                change.state.label().to_lowercase()
            ),
        ));
    }
    Ok(())
}

/// Whether what ran in production is over, so a review can look back on
/// it: a production deployment has ended, or the change itself has (closed,
/// rejected, withdrawn or cancelled). Never while it is approved and not yet
/// deployed, or being deployed: a sign-off ahead of that would not have
/// seen it.
pub fn over(state: ChangeState) -> bool {
    matches!(
        state,
        ChangeState::Implemented | ChangeState::ImplementationFailed
    ) || state.is_closed()
}

/// Whether `actor` may sign off the review: a CAB member or release manager
/// who did not work on the change (wrote or contributed to it, or deployed
/// it: `deployers`), and only when nothing is missing.
pub fn check_sign_off(
    change: &ChangeFacts,
    deployers: &[Uuid],
    actor: &Actor,
    state: ReviewState,
    content: &ReviewContent,
) -> Result<(), Denial> {
    if actor.is_service {
        return Err(Denial::new(
            "service_account",
            "Service accounts do not sign off reviews.",
        ));
    }
    if !(actor.roles.contains(Role::CabMember) || actor.roles.contains(Role::ReleaseManager)) {
        return Err(Denial::new(
            "sign_off_not_allowed",
            "Only CAB members and release managers sign off a review.",
        ));
    }
    if change.is_author(actor.id) || deployers.contains(&actor.id) {
        return Err(Denial::new(
            "self_review",
            "You worked on this change, so you cannot sign off its review; someone who did not must.",
        ));
    }
    if state == ReviewState::SignedOff {
        return Err(Denial::new(
            "already_signed_off",
            "This revision of the review is already signed off.",
        ));
    }
    if !over(change.state) {
        return Err(Denial::new(
            "not_over_yet",
            format!(
                "This change is {}; its review is signed off once its production deployment has ended or the change has ended.",
                change.state.label().to_lowercase()
            ),
        ));
    }
    let missing = content.missing();
    if !missing.is_empty() {
        return Err(Denial::new(
            "review_incomplete",
            format!(
                "The review is not complete: {}",
                missing
                    .iter()
                    .map(|e| e.message.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        ));
    }
    Ok(())
}

/// Who may add an action item or move one along: whoever may write the
/// review, and the item's owner. Items are added while the review is being
/// written; their status moves on after sign-off too.
pub fn check_action(
    change: &ChangeFacts,
    actor: &Actor,
    owner: Option<Uuid>,
    adding: bool,
    state: ReviewState,
) -> Result<(), Denial> {
    if !adding && owner == Some(actor.id) && !actor.is_service && actor.roles.may_act() {
        return Ok(());
    }
    check_write(change, actor)?;
    if adding && state == ReviewState::SignedOff {
        return Err(Denial::new(
            "review_signed_off",
            "The review is signed off; amend it to add action items.",
        ));
    }
    Ok(())
}

/// Whether a person holding these roles (as stored) may own an action item.
pub fn may_own_action(roles: &[String]) -> bool {
    roles.iter().any(|r| {
        Role::ALL
            .iter()
            .any(|k| *k != Role::Auditor && k.as_str() == r)
    })
}

/// An action item as typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAction {
    pub title: String,
    pub due_on: NaiveDate,
}

pub fn validate_action(title: &str, due_on: NaiveDate, today: NaiveDate) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let n = title.trim().chars().count();
    if n == 0 || n > 200 {
        errors.push(err(
            "title",
            "Give the action a title (1 to 200 characters).",
        ));
    }
    if due_on < today || due_on > today + chrono::Duration::days(730) {
        errors.push(err(
            "due_on",
            "Choose a due date from today to two years ahead.",
        ));
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RoleSet;
    use CloseCode::{
        FailedNotRolledBack, FailedRolledBack, NotImplemented, Successful, SuccessfulWithIssues,
    };
    use chrono::{Duration, TimeZone, Timelike};

    const AUTHOR: u128 = 1;
    const CONTRIBUTOR: u128 = 2;
    const DEPLOYER: u128 = 3;
    const OUTSIDER: u128 = 10;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn actor(n: u128, roles: &[Role], is_service: bool) -> Actor {
        Actor {
            id: id(n),
            roles: roles.iter().copied().collect::<RoleSet>(),
            is_service,
        }
    }

    fn person(n: u128, roles: &[Role]) -> Actor {
        actor(n, roles, false)
    }

    /// A change written by 1 with 2 as a contributor.
    fn facts(state: ChangeState) -> ChangeFacts {
        ChangeFacts {
            state,
            author: id(AUTHOR),
            contributors: vec![id(CONTRIBUTOR)],
            assessors: vec![id(20)],
            voters: vec![id(21)],
        }
    }

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    fn now() -> DateTime<Utc> {
        at(2026, 3, 1, 12, 0, 0)
    }

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn incident(reference: &str, caused: Causation) -> Incident {
        Incident {
            reference: reference.into(),
            severity: Severity::Sev2,
            caused,
            started_at: at(2026, 2, 27, 22, 10, 0),
            restored_at: Some(at(2026, 2, 27, 23, 40, 0)),
        }
    }

    /// A review with everything sign-off needs.
    fn complete() -> ReviewContent {
        ReviewContent {
            outcome: "Deployed; error rate rose for ten minutes.".into(),
            intervention: Some(Intervention::Hotfix),
            incidents: vec![incident("INC-1042", Causation::Confirmed)],
            went_well: "The canary caught it.".into(),
            went_wrong: "The alert fired late.".into(),
            lessons: "Alert on the canary's error rate.".into(),
        }
    }

    fn with(edit: impl FnOnce(&mut ReviewContent)) -> ReviewContent {
        let mut c = complete();
        edit(&mut c);
        c
    }

    fn errors(errors: Vec<FieldError>) -> Vec<(&'static str, String)> {
        errors.into_iter().map(|e| (e.field, e.message)).collect()
    }

    fn faults(content: &ReviewContent) -> Vec<(&'static str, String)> {
        errors(content.validate(now()))
    }

    fn code<T>(result: Result<T, Denial>) -> Result<T, &'static str> {
        result.map_err(|d| d.code)
    }

    // Closing.

    #[test]
    fn only_the_two_failures_count_as_failed() {
        let failed: Vec<CloseCode> = CloseCode::ALL
            .iter()
            .copied()
            .filter(|c| c.failed())
            .collect();
        assert_eq!(failed, [FailedRolledBack, FailedNotRolledBack]);
    }

    #[test]
    fn each_close_code_fits_only_what_the_deployment_record_says() {
        use ChangeState::*;
        let mis = Err("close_code_mismatch");
        let na = Err("not_approved");
        let closed = Err("change_closed");
        let under_way = Err("deployment_under_way");
        let ok = Ok(());
        // Successful, with issues, failed rolled back, failed not rolled
        // back, not implemented.
        let table: [(ChangeState, [Result<(), &str>; 5]); 13] = [
            (Draft, [na; 5]),
            (Submitted, [na; 5]),
            (InAssessment, [na; 5]),
            (InCabReview, [na; 5]),
            (ChangesRequested, [na; 5]),
            (Approved, [mis, mis, mis, mis, ok]),
            (Rejected, [closed; 5]),
            (Withdrawn, [closed; 5]),
            (Cancelled, [closed; 5]),
            (Implementing, [under_way; 5]),
            (Implemented, [ok, ok, ok, ok, mis]),
            (ImplementationFailed, [mis, mis, ok, ok, mis]),
            (Closed, [closed; 5]),
        ];
        let states: Vec<ChangeState> = table.iter().map(|(s, _)| *s).collect();
        assert_eq!(states, ChangeState::ALL);
        for (state, cells) in table {
            for (close, expected) in CloseCode::ALL.iter().zip(cells) {
                assert_eq!(
                    code(check_close_code(state, *close)),
                    expected,
                    "{close:?} on {state:?}"
                );
            }
        }
    }

    #[test]
    fn a_failed_deployment_cannot_be_closed_as_successful() {
        for close in [Successful, SuccessfulWithIssues] {
            let d = check_close_code(ChangeState::ImplementationFailed, close).unwrap_err();
            assert_eq!(d.code, "close_code_mismatch");
        }
    }

    #[test]
    fn a_refused_close_code_says_why_in_words() {
        let message = |state, close| check_close_code(state, close).unwrap_err().message;
        assert_eq!(
            message(ChangeState::Approved, Successful),
            "This change cannot be closed as successful: it never reached production; close it as not implemented."
        );
        assert_eq!(
            message(ChangeState::Implemented, NotImplemented),
            "This change cannot be closed as not implemented: it reached production, so it was implemented."
        );
        let failed = message(ChangeState::ImplementationFailed, SuccessfulWithIssues);
        assert!(
            failed.contains(" cannot be closed as successful with issues: "),
            "{failed}"
        );
        assert!(
            failed.ends_with(
                ": its last production deployment failed; close it as failed, rolled back or not."
            ),
            "{failed}"
        );
        assert_eq!(
            message(ChangeState::Implementing, Successful),
            "Its production deployment is under way; close it once the deployment has ended."
        );
        assert_eq!(
            message(ChangeState::Closed, Successful),
            "This change is already closed."
        );
        assert_eq!(
            message(ChangeState::Cancelled, NotImplemented),
            "This change is cancelled and can no longer change."
        );
        assert_eq!(
            message(ChangeState::InCabReview, NotImplemented),
            "Only an approved change is closed with a close code; withdraw or cancel one that was not approved."
        );
    }

    #[test]
    fn empty_notes_are_allowed_only_for_a_successful_close() {
        for close in CloseCode::ALL.iter().copied() {
            for notes in ["", "   ", "\n\t "] {
                let got = check_close_notes(close, notes).map_err(|e| (e.field, e.message));
                if close == Successful {
                    assert_eq!(got, Ok(()), "{close:?} {notes:?}");
                } else {
                    assert_eq!(
                        got,
                        Err((
                            "notes",
                            format!(
                                "Say what happened: a change closed as {} needs notes.",
                                close.label().to_lowercase()
                            )
                        )),
                        "{close:?} {notes:?}"
                    );
                }
            }
            assert_eq!(
                check_close_notes(close, "Rolled back after the canary."),
                Ok(()),
                "{close:?}"
            );
        }
        assert_eq!(
            check_close_notes(FailedRolledBack, "").unwrap_err().message,
            "Say what happened: a change closed as failed and rolled back needs notes."
        );
    }

    #[test]
    fn close_notes_are_kept_to_4000_characters() {
        let limit = "é".repeat(4000);
        for close in CloseCode::ALL.iter().copied() {
            assert_eq!(check_close_notes(close, &limit), Ok(()), "{close:?}");
            // What surrounds the notes is not counted.
            assert_eq!(
                check_close_notes(close, &format!("  {limit}\n")),
                Ok(()),
                "{close:?}"
            );
            assert_eq!(
                check_close_notes(close, &format!("{limit}e")).map_err(|e| (e.field, e.message)),
                Err(("notes", "Keep the notes to 4000 characters.".to_owned())),
                "{close:?}"
            );
        }
    }

    #[test]
    fn control_characters_in_close_notes_are_refused() {
        for close in CloseCode::ALL.iter().copied() {
            let e = check_close_notes(close, "Rolled back\u{1b}[31m").unwrap_err();
            assert_eq!(e.field, "notes");
            assert!(e.message.contains("U+001B ESCAPE"), "{}", e.message);
            assert_eq!(
                check_close_notes(close, "Rolled back.\r\n\tAll good."),
                Ok(()),
                "{close:?}"
            );
        }
        // Even where notes may be empty, what is typed must be storable.
        assert_eq!(
            check_close_notes(Successful, "\u{b}").map_err(|e| e.field),
            Err("notes")
        );
    }

    #[test]
    fn authors_contributors_cab_members_release_managers_and_administrators_close_a_change() {
        let change = facts(ChangeState::Implemented);
        let cases: Vec<(Actor, Result<(), &str>)> = vec![
            (person(AUTHOR, &[Role::Engineer]), Ok(())),
            (person(CONTRIBUTOR, &[Role::Engineer]), Ok(())),
            // Working on the change is enough, whatever the roles.
            (person(CONTRIBUTOR, &[]), Ok(())),
            (
                person(OUTSIDER, &[Role::Engineer]),
                Err("close_not_allowed"),
            ),
            (
                person(OUTSIDER, &[Role::SecurityReviewer]),
                Err("close_not_allowed"),
            ),
            (person(OUTSIDER, &[Role::CabMember]), Ok(())),
            (person(OUTSIDER, &[Role::ReleaseManager]), Ok(())),
            (person(OUTSIDER, &[Role::Auditor]), Err("close_not_allowed")),
            (person(OUTSIDER, &[Role::Admin]), Ok(())),
            (person(OUTSIDER, &[]), Err("close_not_allowed")),
            (
                person(DEPLOYER, &[Role::Engineer]),
                Err("close_not_allowed"),
            ),
        ];
        for (who, expected) in cases {
            assert_eq!(code(check_close(&change, &who)), expected, "{who:?}");
        }
        assert_eq!(
            check_close(&change, &person(OUTSIDER, &[Role::Auditor]))
                .unwrap_err()
                .message,
            "Only the change's authors, CAB members, release managers and administrators close a change."
        );
    }

    #[test]
    fn a_pipeline_never_closes_a_change() {
        let change = facts(ChangeState::Implemented);
        for who in [
            actor(OUTSIDER, &Role::ALL, true),
            actor(CONTRIBUTOR, &[Role::Engineer], true),
            actor(OUTSIDER, &[Role::CabMember, Role::ReleaseManager], true),
        ] {
            let d = check_close(&change, &who).unwrap_err();
            assert_eq!(d.code, "service_account", "{who:?}");
            assert_eq!(
                d.message,
                "Service accounts report deployments; a person closes the change."
            );
        }
    }

    // Writing the review.

    #[test]
    fn those_who_worked_on_the_change_and_cab_release_security_and_admin_staff_write_its_review() {
        let change = facts(ChangeState::Closed);
        let cases: Vec<(Actor, Result<(), &str>)> = vec![
            (person(AUTHOR, &[Role::Engineer]), Ok(())),
            (person(CONTRIBUTOR, &[]), Ok(())),
            (
                person(OUTSIDER, &[Role::Engineer]),
                Err("review_not_allowed"),
            ),
            (person(OUTSIDER, &[Role::SecurityReviewer]), Ok(())),
            (person(OUTSIDER, &[Role::CabMember]), Ok(())),
            (person(OUTSIDER, &[Role::ReleaseManager]), Ok(())),
            (
                person(OUTSIDER, &[Role::Auditor]),
                Err("review_not_allowed"),
            ),
            (person(OUTSIDER, &[Role::Admin]), Ok(())),
            (person(OUTSIDER, &[]), Err("review_not_allowed")),
            // Deploying it is not working on it.
            (
                person(DEPLOYER, &[Role::Engineer]),
                Err("review_not_allowed"),
            ),
            (actor(OUTSIDER, &Role::ALL, true), Err("service_account")),
            (
                actor(CONTRIBUTOR, &[Role::Engineer], true),
                Err("service_account"),
            ),
        ];
        for (who, expected) in cases {
            assert_eq!(code(check_write(&change, &who)), expected, "{who:?}");
        }
        assert_eq!(
            check_write(&change, &actor(AUTHOR, &[], true))
                .unwrap_err()
                .message,
            "Service accounts do not write reviews."
        );
    }

    #[test]
    fn a_review_is_written_once_the_change_was_approved() {
        for state in ChangeState::ALL.iter().copied() {
            let reviewable = matches!(
                state,
                ChangeState::Approved
                    | ChangeState::Implementing
                    | ChangeState::Implemented
                    | ChangeState::ImplementationFailed
                    | ChangeState::Closed
            );
            let got = check_write(&facts(state), &person(AUTHOR, &[Role::Engineer]));
            if reviewable {
                assert_eq!(got, Ok(()), "{state:?}");
            } else {
                let d = got.unwrap_err();
                assert_eq!(d.code, "not_reviewable", "{state:?}");
                assert_eq!(
                    d.message,
                    format!(
                        "This change is {}; a change is reviewed once it was approved.",
                        state.label().to_lowercase()
                    )
                );
            }
            // Who may write is said before when.
            assert_eq!(
                code(check_write(
                    &facts(state),
                    &person(OUTSIDER, &[Role::Auditor])
                )),
                Err("review_not_allowed"),
                "{state:?}"
            );
        }
        assert_eq!(
            check_write(&facts(ChangeState::Draft), &person(AUTHOR, &[]))
                .unwrap_err()
                .message,
            "This change is draft; a change is reviewed once it was approved."
        );
    }

    // Signing it off.

    fn sign_off(who: &Actor, state: ReviewState, content: &ReviewContent) -> Result<(), Denial> {
        check_sign_off(
            &facts(ChangeState::Closed),
            &[id(DEPLOYER), id(30)],
            who,
            state,
            content,
        )
    }

    #[test]
    fn a_review_is_signed_off_only_once_what_ran_in_production_is_over() {
        let member = person(OUTSIDER, &[Role::CabMember]);
        for state in ChangeState::ALL.iter().copied() {
            let got = check_sign_off(&facts(state), &[], &member, ReviewState::Open, &complete());
            let over = matches!(
                state,
                ChangeState::Implemented
                    | ChangeState::ImplementationFailed
                    | ChangeState::Closed
                    | ChangeState::Rejected
                    | ChangeState::Withdrawn
                    | ChangeState::Cancelled
            );
            assert_eq!(got.is_ok(), over, "{state:?}");
            if !over {
                assert_eq!(got.unwrap_err().code, "not_over_yet", "{state:?}");
            }
        }
    }

    #[test]
    fn a_close_code_fits_whether_anything_ran_in_production() {
        for code in CloseCode::ALL.iter().copied() {
            let never = code == CloseCode::NotImplemented;
            assert_eq!(check_close_record(code, true).is_ok(), !never, "{code:?}");
            assert_eq!(check_close_record(code, false).is_ok(), never, "{code:?}");
        }
        assert_eq!(
            check_close_record(CloseCode::NotImplemented, true)
                .unwrap_err()
                .message,
            "This change cannot be closed as not implemented: a production deployment of it ran."
        );
        assert_eq!(
            check_close_record(CloseCode::FailedRolledBack, false)
                .unwrap_err()
                .code,
            "close_code_mismatch"
        );
    }

    #[test]
    fn a_cab_member_or_release_manager_who_did_not_work_on_the_change_signs_off_its_review() {
        let cases: Vec<(Actor, Result<(), &str>)> = vec![
            (person(OUTSIDER, &[Role::CabMember]), Ok(())),
            (person(OUTSIDER, &[Role::ReleaseManager]), Ok(())),
            (
                person(OUTSIDER, &[Role::CabMember, Role::ReleaseManager]),
                Ok(()),
            ),
            (
                person(OUTSIDER, &[Role::Engineer]),
                Err("sign_off_not_allowed"),
            ),
            (
                person(OUTSIDER, &[Role::SecurityReviewer]),
                Err("sign_off_not_allowed"),
            ),
            (
                person(OUTSIDER, &[Role::Auditor]),
                Err("sign_off_not_allowed"),
            ),
            (
                person(OUTSIDER, &[Role::Admin]),
                Err("sign_off_not_allowed"),
            ),
            (person(OUTSIDER, &[]), Err("sign_off_not_allowed")),
            // The author, a contributor and a deployer worked on it.
            (person(AUTHOR, &[Role::CabMember]), Err("self_review")),
            (
                person(CONTRIBUTOR, &[Role::ReleaseManager]),
                Err("self_review"),
            ),
            (person(DEPLOYER, &[Role::CabMember]), Err("self_review")),
            (person(30, &[Role::ReleaseManager]), Err("self_review")),
            // Their own lack of the role is said first.
            (
                person(AUTHOR, &[Role::Engineer]),
                Err("sign_off_not_allowed"),
            ),
            (actor(OUTSIDER, &Role::ALL, true), Err("service_account")),
            (
                actor(AUTHOR, &[Role::CabMember], true),
                Err("service_account"),
            ),
        ];
        for (who, expected) in cases {
            assert_eq!(
                code(sign_off(&who, ReviewState::Open, &complete())),
                expected,
                "{who:?}"
            );
        }
    }

    #[test]
    fn sign_off_refusals_say_why_in_words() {
        let message = |who: Actor, state, content: &ReviewContent| {
            sign_off(&who, state, content).unwrap_err().message
        };
        assert_eq!(
            message(
                actor(OUTSIDER, &[Role::CabMember], true),
                ReviewState::Open,
                &complete()
            ),
            "Service accounts do not sign off reviews."
        );
        assert_eq!(
            message(
                person(OUTSIDER, &[Role::Admin]),
                ReviewState::Open,
                &complete()
            ),
            "Only CAB members and release managers sign off a review."
        );
        assert_eq!(
            message(
                person(DEPLOYER, &[Role::CabMember]),
                ReviewState::Open,
                &complete()
            ),
            "You worked on this change, so you cannot sign off its review; someone who did not must."
        );
        assert_eq!(
            message(
                person(OUTSIDER, &[Role::CabMember]),
                ReviewState::SignedOff,
                &complete()
            ),
            "This revision of the review is already signed off."
        );
    }

    #[test]
    fn a_signed_off_revision_is_not_signed_off_again() {
        let member = person(OUTSIDER, &[Role::CabMember]);
        assert_eq!(
            code(sign_off(&member, ReviewState::SignedOff, &complete())),
            Err("already_signed_off")
        );
        // Even when it is not complete.
        assert_eq!(
            code(sign_off(
                &member,
                ReviewState::SignedOff,
                &ReviewContent::default()
            )),
            Err("already_signed_off")
        );
    }

    #[test]
    fn an_incomplete_review_is_not_signed_off_and_the_refusal_names_what_is_missing() {
        let member = person(OUTSIDER, &[Role::ReleaseManager]);
        let mut content = ReviewContent {
            incidents: vec![
                incident("INC-1", Causation::Confirmed),
                incident("INC-2", Causation::Suspected),
            ],
            ..ReviewContent::default()
        };
        content.incidents[1].restored_at = None;
        let d = sign_off(&member, ReviewState::Open, &content).unwrap_err();
        assert_eq!(d.code, "review_incomplete");
        assert_eq!(
            d.message,
            "The review is not complete: Say what the outcome was. Say what intervention, if any, was needed. Write down the lessons learned (\"none\" is an answer). Incident 2: say when service was restored."
        );
        let d = sign_off(&member, ReviewState::Open, &with(|c| c.lessons.clear())).unwrap_err();
        assert_eq!(
            d.message,
            "The review is not complete: Write down the lessons learned (\"none\" is an answer)."
        );
        // What went well and wrong may stay empty.
        let terse = with(|c| {
            c.went_well.clear();
            c.went_wrong.clear();
        });
        assert_eq!(sign_off(&member, ReviewState::Open, &terse), Ok(()));
    }

    #[test]
    fn sign_off_needs_an_outcome_an_intervention_lessons_and_every_restore_time() {
        assert_eq!(complete().missing(), []);
        let cases: Vec<(ReviewContent, Vec<(&str, &str)>)> = vec![
            (
                with(|c| c.outcome.clear()),
                vec![("outcome", "Say what the outcome was.")],
            ),
            (
                with(|c| c.intervention = None),
                vec![("intervention", "Say what intervention, if any, was needed.")],
            ),
            (
                with(|c| c.lessons.clear()),
                vec![(
                    "lessons",
                    "Write down the lessons learned (\"none\" is an answer).",
                )],
            ),
            (
                with(|c| {
                    c.incidents.push(incident("INC-2", Causation::RuledOut));
                    c.incidents.push(incident("INC-3", Causation::Suspected));
                    c.incidents[0].restored_at = None;
                    c.incidents[2].restored_at = None;
                }),
                vec![
                    ("incidents", "Incident 1: say when service was restored."),
                    ("incidents", "Incident 3: say when service was restored."),
                ],
            ),
            (with(|c| c.went_well.clear()), vec![]),
            (with(|c| c.went_wrong.clear()), vec![]),
            (with(|c| c.incidents.clear()), vec![]),
            (
                with(|c| c.intervention = Some(Intervention::NoIntervention)),
                vec![],
            ),
        ];
        for (content, expected) in cases {
            let got = errors(content.missing());
            let expected: Vec<(&str, String)> = expected
                .into_iter()
                .map(|(f, m)| (f, m.to_owned()))
                .collect();
            assert_eq!(got, expected, "{content:?}");
        }
    }

    // Action items.

    #[test]
    fn whoever_may_write_the_review_adds_action_items_while_it_is_being_written() {
        let change = facts(ChangeState::Closed);
        let cases: Vec<(Actor, ReviewState, Result<(), &str>)> = vec![
            (person(AUTHOR, &[]), ReviewState::Open, Ok(())),
            (
                person(OUTSIDER, &[Role::SecurityReviewer]),
                ReviewState::Open,
                Ok(()),
            ),
            (
                person(OUTSIDER, &[Role::CabMember]),
                ReviewState::Open,
                Ok(()),
            ),
            (
                person(OUTSIDER, &[Role::CabMember]),
                ReviewState::SignedOff,
                Err("review_signed_off"),
            ),
            (
                person(AUTHOR, &[]),
                ReviewState::SignedOff,
                Err("review_signed_off"),
            ),
            (
                person(OUTSIDER, &[Role::Engineer]),
                ReviewState::Open,
                Err("review_not_allowed"),
            ),
            // Who may act is said before the review's state.
            (
                person(OUTSIDER, &[Role::Auditor]),
                ReviewState::SignedOff,
                Err("review_not_allowed"),
            ),
            (
                actor(OUTSIDER, &Role::ALL, true),
                ReviewState::Open,
                Err("service_account"),
            ),
        ];
        for (who, state, expected) in cases {
            assert_eq!(
                code(check_action(&change, &who, None, true, state)),
                expected,
                "{who:?} {state:?}"
            );
        }
        assert_eq!(
            check_action(
                &change,
                &person(AUTHOR, &[]),
                None,
                true,
                ReviewState::SignedOff
            )
            .unwrap_err()
            .message,
            "The review is signed off; amend it to add action items."
        );
        // Not before the change was approved.
        assert_eq!(
            code(check_action(
                &facts(ChangeState::InCabReview),
                &person(AUTHOR, &[]),
                None,
                true,
                ReviewState::Open
            )),
            Err("not_reviewable")
        );
    }

    #[test]
    fn an_action_item_moves_along_after_sign_off_by_its_owner_or_a_writer() {
        let change = facts(ChangeState::Closed);
        let owner = id(40);
        let cases: Vec<(Actor, Result<(), &str>)> = vec![
            // The owner need not have worked on the change, nor write reviews.
            (person(40, &[Role::Engineer]), Ok(())),
            (person(40, &[Role::Auditor, Role::Engineer]), Ok(())),
            // An owner who may change nothing moves nothing.
            (person(40, &[]), Err("review_not_allowed")),
            (person(40, &[Role::Auditor]), Err("review_not_allowed")),
            (person(AUTHOR, &[]), Ok(())),
            (person(OUTSIDER, &[Role::ReleaseManager]), Ok(())),
            (
                person(OUTSIDER, &[Role::Engineer]),
                Err("review_not_allowed"),
            ),
            // A pipeline owns nothing it may move.
            (actor(40, &[Role::CabMember], true), Err("service_account")),
        ];
        for state in [ReviewState::Open, ReviewState::SignedOff] {
            for (who, expected) in &cases {
                assert_eq!(
                    code(check_action(&change, who, Some(owner), false, state)),
                    *expected,
                    "{who:?} {state:?}"
                );
            }
        }
        // Nobody but writers moves an item that has no owner.
        assert_eq!(
            code(check_action(
                &change,
                &person(40, &[Role::Engineer]),
                None,
                false,
                ReviewState::SignedOff
            )),
            Err("review_not_allowed")
        );
        // The owner moves theirs along whatever the change's state.
        assert_eq!(
            check_action(
                &facts(ChangeState::Draft),
                &person(40, &[Role::Engineer]),
                Some(owner),
                false,
                ReviewState::Open
            ),
            Ok(())
        );
    }

    #[test]
    fn anyone_holding_a_role_but_auditor_may_own_an_action_item() {
        let names = |roles: &[&str]| roles.iter().map(|r| r.to_string()).collect::<Vec<_>>();
        for role in Role::ALL {
            assert_eq!(
                may_own_action(&names(&[role.as_str()])),
                role != Role::Auditor,
                "{role:?}"
            );
        }
        assert!(may_own_action(&names(&["auditor", "engineer"])));
        assert!(may_own_action(&names(&["engineer", "auditor"])));
        assert!(!may_own_action(&names(&[])));
        // Only the stored names of roles count.
        assert!(!may_own_action(&names(&["Engineer", "owner", ""])));
    }

    #[test]
    fn an_action_needs_a_title_of_1_to_200_characters() {
        let today = day(2026, 3, 1);
        let title_error = vec![(
            "title",
            "Give the action a title (1 to 200 characters).".to_owned(),
        )];
        let cases: Vec<(String, bool)> = vec![
            (String::new(), false),
            ("   ".into(), false),
            ("x".into(), true),
            ("ö".repeat(200), true),
            (format!("  {}\t", "ö".repeat(200)), true),
            ("ö".repeat(201), false),
        ];
        for (title, fits) in cases {
            let got = errors(validate_action(&title, today, today));
            if fits {
                assert_eq!(got, [], "{title:?}");
            } else {
                assert_eq!(got, title_error, "{title:?}");
            }
        }
    }

    #[test]
    fn an_action_is_due_from_today_to_two_years_ahead() {
        let today = day(2026, 3, 1);
        let date_error = vec![(
            "due_on",
            "Choose a due date from today to two years ahead.".to_owned(),
        )];
        for (days, fits) in [(-1, false), (0, true), (730, true), (731, false)] {
            let due = today + Duration::days(days);
            let got = errors(validate_action("Add the alert", due, today));
            if fits {
                assert_eq!(got, [], "{days}");
            } else {
                assert_eq!(got, date_error, "{days}");
            }
        }
        // Both faults are named at once.
        let got: Vec<&str> = validate_action("", today + Duration::days(1000), today)
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(got, ["title", "due_on"]);
    }

    // Whether a review is owed.

    fn owed() -> Owed {
        Owed {
            change_type: ChangeType::Normal,
            risk: RiskLevel::Low,
            close_code: Some(Successful),
            break_glass: false,
            incident: false,
            all: false,
        }
    }

    #[test]
    fn each_fact_owes_a_review_for_its_own_reason() {
        use ReviewReason::*;
        let cases: Vec<(Owed, Vec<ReviewReason>)> = vec![
            (owed(), vec![]),
            (
                Owed {
                    close_code: None,
                    ..owed()
                },
                vec![],
            ),
            (
                Owed {
                    close_code: Some(SuccessfulWithIssues),
                    ..owed()
                },
                vec![],
            ),
            (
                Owed {
                    close_code: Some(NotImplemented),
                    ..owed()
                },
                vec![],
            ),
            (
                Owed {
                    close_code: Some(FailedRolledBack),
                    ..owed()
                },
                vec![Failed],
            ),
            (
                Owed {
                    close_code: Some(FailedNotRolledBack),
                    ..owed()
                },
                vec![Failed],
            ),
            (
                Owed {
                    change_type: ChangeType::Emergency,
                    ..owed()
                },
                vec![Emergency],
            ),
            (
                Owed {
                    change_type: ChangeType::Standard,
                    ..owed()
                },
                vec![],
            ),
            (
                Owed {
                    break_glass: true,
                    ..owed()
                },
                vec![BreakGlass],
            ),
            (
                Owed {
                    risk: RiskLevel::Medium,
                    ..owed()
                },
                vec![],
            ),
            (
                Owed {
                    risk: RiskLevel::High,
                    ..owed()
                },
                vec![HighRisk],
            ),
            (
                Owed {
                    risk: RiskLevel::Critical,
                    ..owed()
                },
                vec![HighRisk],
            ),
            (
                Owed {
                    incident: true,
                    ..owed()
                },
                vec![Incident],
            ),
            (
                Owed {
                    change_type: ChangeType::Emergency,
                    risk: RiskLevel::Critical,
                    close_code: Some(FailedNotRolledBack),
                    break_glass: true,
                    incident: true,
                    all: true,
                },
                vec![Failed, Emergency, BreakGlass, HighRisk, Incident],
            ),
            // Something owed of a change never implemented stays owed.
            (
                Owed {
                    close_code: Some(NotImplemented),
                    change_type: ChangeType::Emergency,
                    ..owed()
                },
                vec![Emergency],
            ),
        ];
        for (facts, expected) in cases {
            assert_eq!(reasons(&facts), expected, "{facts:?}");
        }
    }

    #[test]
    fn the_setting_owes_a_review_of_every_implemented_change_that_owes_none_otherwise() {
        use ReviewReason::*;
        let all = Owed {
            all: true,
            ..owed()
        };
        let cases: Vec<(Owed, Vec<ReviewReason>)> = vec![
            (all, vec![Policy]),
            (
                Owed {
                    close_code: None,
                    ..all
                },
                vec![Policy],
            ),
            (
                Owed {
                    close_code: Some(SuccessfulWithIssues),
                    ..all
                },
                vec![Policy],
            ),
            (
                Owed {
                    risk: RiskLevel::Medium,
                    ..all
                },
                vec![Policy],
            ),
            // A change never implemented has nothing to review.
            (
                Owed {
                    close_code: Some(NotImplemented),
                    ..all
                },
                vec![],
            ),
            // Another reason is reason enough.
            (
                Owed {
                    close_code: Some(FailedRolledBack),
                    ..all
                },
                vec![Failed],
            ),
            (
                Owed {
                    incident: true,
                    ..all
                },
                vec![Incident],
            ),
            (
                Owed {
                    close_code: Some(NotImplemented),
                    break_glass: true,
                    ..all
                },
                vec![BreakGlass],
            ),
        ];
        for (facts, expected) in cases {
            assert_eq!(reasons(&facts), expected, "{facts:?}");
        }
    }

    // What a review says.

    #[test]
    fn a_draft_review_may_be_empty_and_a_complete_one_has_no_faults() {
        assert_eq!(faults(&ReviewContent::default()), []);
        assert_eq!(faults(&complete()), []);
    }

    /// A free text of the review: its field and where it is.
    type Text = (&'static str, fn(&mut ReviewContent) -> &mut String);

    const TEXTS: [Text; 4] = [
        ("outcome", |c| &mut c.outcome),
        ("went_well", |c| &mut c.went_well),
        ("went_wrong", |c| &mut c.went_wrong),
        ("lessons", |c| &mut c.lessons),
    ];

    #[test]
    fn review_texts_are_kept_to_4000_characters() {
        for (field, text) in TEXTS {
            let at_limit = with(|c| *text(c) = "ü".repeat(4000));
            assert_eq!(faults(&at_limit), [], "{field}");
            let over = with(|c| *text(c) = "ü".repeat(4001));
            assert_eq!(
                faults(&over),
                [(field, "Keep this to 4000 characters.".to_owned())]
            );
        }
    }

    #[test]
    fn control_characters_in_review_texts_are_refused() {
        for (field, text) in TEXTS {
            let bad = with(|c| *text(c) = "Rolled back\u{7f}".into());
            let got = faults(&bad);
            assert_eq!(got.len(), 1, "{got:?}");
            assert_eq!(got[0].0, field);
            assert!(got[0].1.contains("U+007F DELETE"), "{got:?}");
            let lines = with(|c| *text(c) = "One.\r\n\tTwo.".into());
            assert_eq!(faults(&lines), [], "{field}");
        }
    }

    fn incident_faults(edit: impl FnOnce(&mut Incident)) -> Vec<String> {
        let content = with(|c| {
            c.incidents.push(incident("INC-2", Causation::Suspected));
            edit(&mut c.incidents[1]);
        });
        faults(&content)
            .into_iter()
            .map(|(field, message)| {
                assert_eq!(field, "incidents");
                message
            })
            .collect()
    }

    #[test]
    fn an_incident_needs_a_reference_of_1_to_100_characters() {
        let reference = "Incident 2: give its reference (1 to 100 characters).";
        for (value, expected) in [
            (String::new(), vec![reference]),
            ("x".into(), vec![]),
            ("ß".repeat(100), vec![]),
            ("ß".repeat(101), vec![reference]),
        ] {
            assert_eq!(
                incident_faults(|i| i.reference = value.clone()),
                expected,
                "{value:?}"
            );
        }
        let got = incident_faults(|i| i.reference = "INC\u{0}7".into());
        assert_eq!(
            got,
            [
                "Incident 2: Contains U+0000 NULL, a control character that cannot be stored; remove it."
            ]
        );
    }

    #[test]
    fn incident_times_are_real_and_not_in_the_future() {
        let start = "Incident 2: its start must be a real time, not in the future.";
        let restore =
            "Incident 2: the time service was restored must be a real time, not in the future.";
        let before = "Incident 2: service cannot be restored before the incident started.";
        let n = now();
        // When it started, when service was restored, and the faults.
        type Case<'a> = (DateTime<Utc>, Option<DateTime<Utc>>, Vec<&'a str>);
        let cases: Vec<Case> = vec![
            (n - Duration::hours(2), Some(n - Duration::hours(1)), vec![]),
            (n - Duration::hours(2), None, vec![]),
            (n, Some(n), vec![]),
            // A minute's grace for clocks.
            (n + Duration::seconds(30), None, vec![]),
            (
                n + Duration::minutes(1),
                Some(n + Duration::minutes(1)),
                vec![],
            ),
            (n + Duration::seconds(61), None, vec![start]),
            (
                n - Duration::hours(1),
                Some(n + Duration::seconds(61)),
                vec![restore],
            ),
            (
                at(2000, 1, 1, 0, 0, 0),
                Some(at(2000, 1, 1, 0, 0, 0)),
                vec![],
            ),
            (at(1999, 12, 31, 23, 59, 59), None, vec![start]),
            (
                at(1999, 12, 31, 23, 0, 0),
                Some(at(1999, 12, 31, 23, 59, 59)),
                vec![start, restore],
            ),
            (
                n + Duration::days(1),
                Some(n + Duration::days(2)),
                vec![start, restore],
            ),
        ];
        for (started_at, restored_at, expected) in cases {
            assert_eq!(
                incident_faults(|i| {
                    i.started_at = started_at;
                    i.restored_at = restored_at;
                }),
                expected,
                "{started_at} {restored_at:?}"
            );
        }
        assert_eq!(
            incident_faults(|i| {
                i.started_at = n - Duration::hours(1);
                i.restored_at = Some(n - Duration::hours(1) - Duration::seconds(1));
            }),
            [before]
        );
    }

    #[test]
    fn service_cannot_be_restored_before_the_incident_started() {
        let n = now();
        assert_eq!(
            incident_faults(|i| {
                i.started_at = n - Duration::hours(1);
                i.restored_at = Some(n - Duration::hours(2));
            }),
            ["Incident 2: service cannot be restored before the incident started."]
        );
        // A restore time in the future is named as such, not as early.
        assert_eq!(
            incident_faults(|i| {
                i.started_at = n + Duration::days(3);
                i.restored_at = Some(n + Duration::days(2));
            }),
            [
                "Incident 2: its start must be a real time, not in the future.",
                "Incident 2: the time service was restored must be a real time, not in the future."
            ]
        );
    }

    #[test]
    fn one_incident_can_have_several_faults_each_numbered() {
        let got = incident_faults(|i| {
            i.reference = String::new();
            i.started_at = now() + Duration::days(1);
            i.restored_at = None;
        });
        assert_eq!(
            got,
            [
                "Incident 2: give its reference (1 to 100 characters).",
                "Incident 2: its start must be a real time, not in the future."
            ]
        );
    }

    #[test]
    fn a_review_links_at_most_20_incidents() {
        let many = |n: usize| {
            with(|c| {
                c.incidents = (1..=n)
                    .map(|k| incident(&format!("INC-{k}"), Causation::Suspected))
                    .collect();
            })
        };
        assert_eq!(faults(&many(MAX_INCIDENTS)), []);
        assert_eq!(
            faults(&many(MAX_INCIDENTS + 1)),
            [(
                "incidents",
                "A review links at most 20 incidents.".to_owned()
            )]
        );
    }

    #[test]
    fn a_stored_review_is_trimmed_and_keeps_times_to_the_second() {
        let started = at(2026, 2, 27, 22, 10, 5);
        let restored = at(2026, 2, 27, 23, 40, 9);
        let typed = ReviewContent {
            outcome: "  Deployed.\n".into(),
            intervention: Some(Intervention::Rollback),
            incidents: vec![
                Incident {
                    reference: "\tINC-7 ".into(),
                    severity: Severity::Sev1,
                    caused: Causation::Confirmed,
                    started_at: started + Duration::milliseconds(999),
                    restored_at: Some(restored + Duration::microseconds(1)),
                },
                Incident {
                    reference: "INC-8".into(),
                    severity: Severity::Sev4,
                    caused: Causation::RuledOut,
                    started_at: started + Duration::nanoseconds(1),
                    restored_at: None,
                },
            ],
            went_well: " Rollback was quick. ".into(),
            went_wrong: "\r\nNo alert.\t".into(),
            lessons: "   ".into(),
        };
        let stored = typed.normalized();
        assert_eq!(
            stored,
            ReviewContent {
                outcome: "Deployed.".into(),
                intervention: Some(Intervention::Rollback),
                incidents: vec![
                    Incident {
                        reference: "INC-7".into(),
                        severity: Severity::Sev1,
                        caused: Causation::Confirmed,
                        started_at: started,
                        restored_at: Some(restored),
                    },
                    Incident {
                        reference: "INC-8".into(),
                        severity: Severity::Sev4,
                        caused: Causation::RuledOut,
                        started_at: started,
                        restored_at: None,
                    },
                ],
                went_well: "Rollback was quick.".into(),
                went_wrong: "No alert.".into(),
                lessons: String::new(),
            }
        );
        assert_eq!(stored.incidents[0].started_at.nanosecond(), 0);
        assert_eq!(complete().normalized(), complete());
    }

    #[test]
    fn a_review_links_an_incident_the_change_caused_or_may_have_caused() {
        use Causation::*;
        for (caused, links) in [
            (vec![], false),
            (vec![RuledOut], false),
            (vec![RuledOut, RuledOut], false),
            (vec![Suspected], true),
            (vec![Confirmed], true),
            (vec![RuledOut, Suspected], true),
            (vec![Confirmed, RuledOut], true),
        ] {
            let content = with(|c| {
                c.incidents = caused.iter().map(|k| incident("INC-1", *k)).collect();
            });
            assert_eq!(content.links_incident(), links, "{caused:?}");
        }
    }

    #[test]
    fn a_new_revision_names_each_field_that_changed() {
        let before = complete();
        let cases: Vec<(ReviewContent, Vec<&str>)> = vec![
            (complete(), vec![]),
            (with(|c| c.outcome.push('!')), vec!["outcome"]),
            (
                with(|c| c.intervention = Some(Intervention::ForwardFix)),
                vec!["intervention"],
            ),
            (with(|c| c.intervention = None), vec!["intervention"]),
            (
                with(|c| c.incidents[0].severity = Severity::Sev1),
                vec!["incidents"],
            ),
            (with(|c| c.incidents.clear()), vec!["incidents"]),
            (with(|c| c.went_well.clear()), vec!["went_well"]),
            (with(|c| c.went_wrong.push('?')), vec!["went_wrong"]),
            (with(|c| c.lessons = "None.".into()), vec!["lessons"]),
            (
                ReviewContent::default(),
                vec![
                    "outcome",
                    "intervention",
                    "incidents",
                    "went_well",
                    "went_wrong",
                    "lessons",
                ],
            ),
        ];
        for (after, expected) in cases {
            assert_eq!(after.diff(&before), expected, "{after:?}");
        }
    }
}
