//! The release plan form, new and edit. It holds every part of the plan:
//! the name and version, the four milestones (in UTC), the test strategy,
//! the deployment phases and communications as fixed rows (blank rows are
//! left out), the rollback plan, and on a new plan the changes in scope
//! with the reason they go together. What cannot even be read (a date, a
//! number) comes back beside its field with the rules' own findings, the
//! input kept; saving an edit makes a new revision.

use askama::Template;
use axum::Form;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cab_domain::release::{
    self, Communication, Milestone, Milestones, Phase, ReleasePlan, ReleaseState, RollbackPlan,
    TestLevel, TestStrategy,
};
use chrono::{DateTime, NaiveDateTime, Timelike, Utc};

use super::{add, field_errors, is_refusal, load, page_of, refusal_sentences};
use crate::audit_log::Entity;
use crate::error::AppError;
use crate::page_error::PageResult;
use crate::refusal;
use crate::releases::{self, Edit, ReleaseView};
use crate::request::Origin;
use crate::ui::form::{FieldErrors, FormPairs as Pairs, checked, form_value as value};
use crate::ui::notice::{Notice, redirect_with};
use crate::ui::{Layout, Viewer, render};
use cab_domain::audit::Attempt;

/// Rows the form always offers, filled or not.
const PHASE_ROWS: usize = 5;
const COMMUNICATION_ROWS: usize = 3;

/// The milestones' fields, in the order they fall.
const MILESTONE_FIELDS: [&str; 4] = ["code_freeze", "go_no_go", "deployment", "hypercare_end"];

/// The form's fields, in its order, with their labels: the error summary.
const SUMMARY: [(&str, &str); 20] = [
    ("plan", "The plan"),
    ("name", "Name"),
    ("version", "Version"),
    ("code_freeze", "Code freeze"),
    ("go_no_go", "Go/no-go"),
    ("deployment", "Deployment"),
    ("hypercare_end", "End of hypercare"),
    ("test_levels", "Test levels"),
    ("entry_criteria", "Entry criteria"),
    ("exit_criteria", "Exit criteria"),
    ("evidence", "Evidence"),
    ("phases", "Deployment phases"),
    ("rollback_triggers", "Rollback triggers"),
    ("rollback_steps", "Rollback steps"),
    ("rollback_max_minutes", "Longest rollback"),
    ("irreversible_steps", "Steps that cannot be undone"),
    ("communications", "Communications"),
    ("changes", "Changes in scope"),
    ("reason", "Reason"),
    ("revision", "Revision"),
];

/// One deployment phase as typed.
#[derive(Default, Clone)]
pub(super) struct PhaseRow {
    pub n: usize,
    pub environment: String,
    pub target: String,
    pub soak: String,
    pub proceed: String,
    pub abort: String,
}

impl PhaseRow {
    fn is_blank(&self) -> bool {
        [
            &self.environment,
            &self.target,
            &self.soak,
            &self.proceed,
            &self.abort,
        ]
        .iter()
        .all(|s| s.trim().is_empty())
    }
}

/// One communication as typed.
#[derive(Default, Clone)]
pub(super) struct CommunicationRow {
    pub n: usize,
    pub audience: String,
    pub channel: String,
    pub when: String,
    pub message: String,
}

impl CommunicationRow {
    fn is_blank(&self) -> bool {
        [&self.audience, &self.channel, &self.when, &self.message]
            .iter()
            .all(|s| s.trim().is_empty())
    }
}

/// The plan as the form holds it: what was typed, or the stored plan.
#[derive(Default)]
pub(super) struct PlanInput {
    pub name: String,
    pub version: String,
    pub code_freeze: String,
    pub go_no_go: String,
    pub deployment: String,
    pub hypercare_end: String,
    pub levels: Vec<TestLevel>,
    pub entry_criteria: String,
    pub exit_criteria: String,
    pub evidence: String,
    pub phases: Vec<PhaseRow>,
    pub rollback_triggers: String,
    pub rollback_steps: String,
    pub rollback_max_minutes: String,
    pub irreversible: bool,
    pub irreversible_steps: String,
    pub communications: Vec<CommunicationRow>,
    pub changes: String,
    pub reason: String,
}

/// A time as a `datetime-local` value, in UTC (seconds only when it has
/// them, so an edit keeps the time it does not change).
fn local_input(t: DateTime<Utc>) -> String {
    if t.second() == 0 {
        t.format("%Y-%m-%dT%H:%M").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%S").to_string()
    }
}

/// A time typed into the form, in UTC; `Ok(None)` when left empty.
fn read_time(raw: &str) -> Result<Option<DateTime<Utc>>, ()> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    [
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%d %H:%M:%S",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(raw, f).ok())
    .map(|t| Some(t.and_utc()))
    .ok_or(())
}

/// Whole minutes typed into the form; `Ok(None)` when left empty.
fn read_minutes(raw: &str) -> Result<Option<u32>, ()> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    raw.parse::<u32>().map(Some).map_err(|_| ())
}

/// Where a form without a readable time stands in for it; its errors are
/// not shown (the field's own is).
fn placeholder_time() -> DateTime<Utc> {
    DateTime::<Utc>::UNIX_EPOCH
}

impl PlanInput {
    fn blank() -> Self {
        PlanInput {
            phases: (1..=PHASE_ROWS)
                .map(|n| PhaseRow {
                    n,
                    ..PhaseRow::default()
                })
                .collect(),
            communications: (1..=COMMUNICATION_ROWS)
                .map(|n| CommunicationRow {
                    n,
                    ..CommunicationRow::default()
                })
                .collect(),
            ..PlanInput::default()
        }
    }

    fn from_plan(plan: &ReleasePlan) -> Self {
        let m = &plan.milestones;
        let t = &plan.test_strategy;
        let r = &plan.rollback;
        let mut phases: Vec<PhaseRow> = plan
            .phases
            .iter()
            .enumerate()
            .map(|(i, p)| PhaseRow {
                n: i + 1,
                environment: p.environment.clone(),
                target: p.target.clone(),
                soak: p.soak_minutes.to_string(),
                proceed: p.proceed_criteria.clone(),
                abort: p.abort_criteria.clone(),
            })
            .collect();
        while phases.len() < PHASE_ROWS {
            phases.push(PhaseRow {
                n: phases.len() + 1,
                ..PhaseRow::default()
            });
        }
        let mut communications: Vec<CommunicationRow> = plan
            .communications
            .iter()
            .enumerate()
            .map(|(i, c)| CommunicationRow {
                n: i + 1,
                audience: c.audience.clone(),
                channel: c.channel.clone(),
                when: local_input(c.when),
                message: c.message.clone(),
            })
            .collect();
        while communications.len() < COMMUNICATION_ROWS {
            communications.push(CommunicationRow {
                n: communications.len() + 1,
                ..CommunicationRow::default()
            });
        }
        PlanInput {
            name: plan.name.clone(),
            version: plan.version.clone(),
            code_freeze: local_input(m.code_freeze),
            go_no_go: local_input(m.go_no_go),
            deployment: local_input(m.deployment),
            hypercare_end: local_input(m.hypercare_end),
            levels: t.levels.clone(),
            entry_criteria: t.entry_criteria.clone(),
            exit_criteria: t.exit_criteria.clone(),
            evidence: t.evidence.join("\n"),
            phases,
            rollback_triggers: r.triggers.clone(),
            rollback_steps: r.steps.clone(),
            rollback_max_minutes: r.max_minutes.to_string(),
            irreversible: r.irreversible,
            irreversible_steps: r.irreversible_steps.clone(),
            communications,
            changes: String::new(),
            reason: String::new(),
        }
    }

    fn from_pairs(form: &Pairs) -> Self {
        let has = |name: &str| form.iter().any(|(k, _)| k == name);
        let mut phases = Vec::new();
        for n in 1..=release::MAX_PHASES {
            let field = |part: &str| value(form, &format!("phase_{n}_{part}"));
            if n > PHASE_ROWS && !has(&format!("phase_{n}_target")) {
                break;
            }
            phases.push(PhaseRow {
                n,
                environment: field("environment"),
                target: field("target"),
                soak: field("soak"),
                proceed: field("proceed"),
                abort: field("abort"),
            });
        }
        let mut communications = Vec::new();
        for n in 1..=release::MAX_COMMUNICATIONS {
            let field = |part: &str| value(form, &format!("comm_{n}_{part}"));
            if n > COMMUNICATION_ROWS && !has(&format!("comm_{n}_audience")) {
                break;
            }
            communications.push(CommunicationRow {
                n,
                audience: field("audience"),
                channel: field("channel"),
                when: field("when"),
                message: field("message"),
            });
        }
        PlanInput {
            name: value(form, "name"),
            version: value(form, "version"),
            code_freeze: value(form, "code_freeze"),
            go_no_go: value(form, "go_no_go"),
            deployment: value(form, "deployment"),
            hypercare_end: value(form, "hypercare_end"),
            levels: form
                .iter()
                .filter(|(k, _)| k == "test_levels")
                .filter_map(|(_, v)| TestLevel::parse(v))
                .collect(),
            entry_criteria: value(form, "entry_criteria"),
            exit_criteria: value(form, "exit_criteria"),
            evidence: value(form, "evidence"),
            phases,
            rollback_triggers: value(form, "rollback_triggers"),
            rollback_steps: value(form, "rollback_steps"),
            rollback_max_minutes: value(form, "rollback_max_minutes"),
            irreversible: checked(form, "irreversible"),
            irreversible_steps: value(form, "irreversible_steps"),
            communications,
            changes: value(form, "changes"),
            reason: value(form, "reason"),
        }
    }

    /// The change numbers typed, one per line (commas and spaces also
    /// separate them), each once.
    fn change_list(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for raw in self
            .changes
            .split(|c: char| c == ',' || c.is_whitespace())
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let key = raw.to_uppercase();
            if !out.iter().any(|k| k.to_uppercase() == key) {
                out.push(raw.to_owned());
            }
        }
        out
    }

    /// The plan the form holds, and what could not be read, beside its
    /// field. A milestone that cannot be read leaves the others' order
    /// unjudged (`true`).
    fn read(&self) -> (ReleasePlan, FieldErrors, bool) {
        let mut errors = FieldErrors::default();
        let mut milestone_unread = false;
        let mut times = [placeholder_time(); 4];
        for (i, (field, raw)) in MILESTONE_FIELDS
            .iter()
            .zip([
                &self.code_freeze,
                &self.go_no_go,
                &self.deployment,
                &self.hypercare_end,
            ])
            .enumerate()
        {
            let label = Milestone::parse(field).map_or("milestone", Milestone::label);
            match read_time(raw) {
                Ok(Some(t)) => times[i] = t,
                Ok(None) => {
                    milestone_unread = true;
                    errors.insert(
                        field,
                        format!(
                            "Give the {} as a date and a time in UTC.",
                            label.to_lowercase()
                        ),
                    );
                }
                Err(()) => {
                    milestone_unread = true;
                    errors.insert(
                        field,
                        "Give a date and a time in UTC, such as 2026-12-01T10:00.",
                    );
                }
            }
        }
        let mut phases = Vec::new();
        for row in self.phases.iter().filter(|r| !r.is_blank()) {
            let soak = match read_minutes(&row.soak) {
                Ok(m) => m.unwrap_or(0),
                Err(()) => {
                    add(
                        &mut errors,
                        "phases",
                        format!(
                            "Phase {}: give the soak time in whole minutes, such as 30.",
                            phases.len() + 1
                        ),
                    );
                    0
                }
            };
            phases.push(Phase {
                environment: row.environment.trim().to_owned(),
                target: row.target.clone(),
                soak_minutes: soak,
                proceed_criteria: row.proceed.clone(),
                abort_criteria: row.abort.clone(),
            });
        }
        let max_minutes = match read_minutes(&self.rollback_max_minutes) {
            Ok(m) => m.unwrap_or(0),
            Err(()) => {
                errors.insert(
                    "rollback_max_minutes",
                    "Give the longest the rollback may take in whole minutes, such as 30.",
                );
                0
            }
        };
        let mut communications = Vec::new();
        for row in self.communications.iter().filter(|r| !r.is_blank()) {
            let n = communications.len() + 1;
            let when = match read_time(&row.when) {
                Ok(Some(t)) => t,
                Ok(None) => {
                    add(
                        &mut errors,
                        "communications",
                        format!("Communication {n}: give when it goes out, in UTC."),
                    );
                    placeholder_time()
                }
                Err(()) => {
                    add(
                        &mut errors,
                        "communications",
                        format!(
                            "Communication {n}: give a date and a time in UTC, such as 2026-12-01T10:00."
                        ),
                    );
                    placeholder_time()
                }
            };
            communications.push(Communication {
                audience: row.audience.clone(),
                channel: row.channel.clone(),
                when,
                message: row.message.clone(),
            });
        }
        let plan = ReleasePlan {
            name: self.name.clone(),
            version: self.version.trim().to_owned(),
            milestones: Milestones {
                code_freeze: times[0],
                go_no_go: times[1],
                deployment: times[2],
                hypercare_end: times[3],
            },
            test_strategy: TestStrategy {
                levels: TestLevel::ALL
                    .iter()
                    .copied()
                    .filter(|l| self.levels.contains(l))
                    .collect(),
                entry_criteria: self.entry_criteria.clone(),
                exit_criteria: self.exit_criteria.clone(),
                evidence: self
                    .evidence
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned)
                    .collect(),
            },
            phases,
            rollback: RollbackPlan {
                triggers: self.rollback_triggers.clone(),
                steps: self.rollback_steps.clone(),
                max_minutes,
                irreversible: self.irreversible,
                irreversible_steps: self.irreversible_steps.clone(),
            },
            communications,
        };
        (plan, errors, milestone_unread)
    }
}

/// What the rules find in a plan the form could not read all of, added to
/// what the form found: every fault at once. Where a placeholder stands in
/// for an unread value, the rules' finding about it is left out.
async fn with_rule_errors(
    viewer: &Viewer,
    plan: &ReleasePlan,
    errors: &mut FieldErrors,
    milestone_unread: bool,
) -> Result<(), AppError> {
    let rules: Vec<_> = {
        let mut conn = viewer.state.pool.acquire().await?;
        crate::deployments::environments(&mut conn)
            .await?
            .into_iter()
            .map(|e| e.rules)
            .collect()
    };
    for e in plan.validate(&rules) {
        let field = e.field;
        if milestone_unread && MILESTONE_FIELDS.contains(&field) {
            continue;
        }
        let rows = field == "phases" || field == "communications";
        if errors.get(field).is_some() && !rows {
            continue;
        }
        add(errors, field, e.message);
    }
    Ok(())
}

/// A test level offered as a checkbox.
struct LevelChoice {
    value: &'static str,
    label: &'static str,
    checked: bool,
}

/// An environment a phase may name.
struct EnvOption {
    key: String,
    label: String,
}

/// The release being edited.
struct Editing {
    key: String,
    href: String,
    revision: i32,
    state: ReleaseState,
}

#[derive(Template)]
#[template(path = "releases/form.html")]
struct FormPage {
    layout: Layout,
    editing: Option<Editing>,
    action: String,
    input: PlanInput,
    levels: Vec<LevelChoice>,
    environments: Vec<EnvOption>,
    errors: FieldErrors,
    summary: Vec<(&'static str, &'static str)>,
    /// Why saving was refused, if it was.
    refused: Vec<String>,
}

async fn form_page(
    viewer: &Viewer,
    editing: Option<&ReleaseView>,
    input: PlanInput,
    errors: FieldErrors,
    refused: Vec<String>,
    status: StatusCode,
) -> Result<Response, AppError> {
    let envs = {
        let mut conn = viewer.state.pool.acquire().await?;
        crate::deployments::environments(&mut conn).await?
    };
    let page = FormPage {
        layout: viewer.layout(match editing {
            Some(r) => format!("Edit {}", r.key()),
            None => "Plan a release".into(),
        }),
        action: match editing {
            Some(r) => format!("{}/edit", page_of(r)),
            None => "/releases/new".into(),
        },
        editing: editing.map(|r| Editing {
            key: r.key(),
            href: page_of(r),
            revision: r.row.revision,
            state: r.state,
        }),
        levels: TestLevel::ALL
            .iter()
            .map(|l| LevelChoice {
                value: l.as_str(),
                label: l.label(),
                checked: input.levels.contains(l),
            })
            .collect(),
        environments: envs
            .into_iter()
            .map(|e| EnvOption {
                key: e.rules.key,
                label: e.rules.label,
            })
            .collect(),
        input,
        errors,
        summary: SUMMARY.to_vec(),
        refused,
    };
    Ok((status, render(&page)).into_response())
}

/// Planning is for release managers and administrators: anyone else is
/// refused, and the refusal recorded, before the form is read.
async fn check_may_plan(viewer: &Viewer, origin: &Origin) -> Result<(), AppError> {
    refusal::checked(
        &viewer.state.pool,
        viewer.user.audit_actor(),
        origin,
        Attempt::ReleaseCreate.as_str(),
        Entity::kind("release"),
        release::check_plan(&viewer.user.actor()),
    )
    .await
}

/// Whether the person may edit the release's plan now (the service asks
/// again under the release's lock).
async fn check_may_edit(viewer: &Viewer, origin: &Origin, r: &ReleaseView) -> Result<(), AppError> {
    refusal::checked(
        &viewer.state.pool,
        viewer.user.audit_actor(),
        origin,
        Attempt::ReleaseEdit.as_str(),
        Entity::new("release", r.id()),
        release::check_edit(&viewer.user.actor(), r.state).map(|_| ()),
    )
    .await
}

/// `GET /releases/new`.
pub(crate) async fn new_form(viewer: Viewer, origin: Origin) -> PageResult {
    check_may_plan(&viewer, &origin).await?;
    Ok(form_page(
        &viewer,
        None,
        PlanInput::blank(),
        FieldErrors::default(),
        Vec::new(),
        StatusCode::OK,
    )
    .await?)
}

/// `POST /releases/new`: a draft at revision 1, with its changes.
pub(crate) async fn create(viewer: Viewer, origin: Origin, Form(pairs): Form<Pairs>) -> PageResult {
    check_may_plan(&viewer, &origin).await?;
    let input = PlanInput::from_pairs(&pairs);
    let (plan, mut errors, milestone_unread) = input.read();
    if !errors.is_empty() {
        with_rule_errors(&viewer, &plan, &mut errors, milestone_unread).await?;
        return Ok(form_page(
            &viewer,
            None,
            input,
            errors,
            Vec::new(),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await?);
    }
    let changes = input.change_list();
    let made = releases::create(
        &viewer.state.pool,
        &viewer.user,
        &origin,
        plan,
        &changes,
        &input.reason,
    )
    .await;
    match made {
        Ok(r) => Ok(redirect_with(
            &viewer,
            &page_of(&r),
            Notice::ReleasePlanned {
                number: r.row.number,
            },
        )),
        Err(e @ (AppError::Invalid { .. } | AppError::Fields(_))) => {
            let errors = field_errors(e)?;
            let status = StatusCode::UNPROCESSABLE_ENTITY;
            Ok(form_page(&viewer, None, input, errors, Vec::new(), status).await?)
        }
        Err(e) if is_refusal(&e) => {
            let status = e.status();
            let refused = refusal_sentences(&e);
            Ok(form_page(
                &viewer,
                None,
                input,
                FieldErrors::default(),
                refused,
                status,
            )
            .await?)
        }
        Err(e) => Err(e.into()),
    }
}

/// `GET /releases/{id}/edit`: the current revision, to make the next.
pub(crate) async fn edit_form(
    viewer: Viewer,
    origin: Origin,
    Path(id): Path<String>,
) -> PageResult {
    let r = load(&viewer, &id).await?;
    check_may_edit(&viewer, &origin, &r).await?;
    let input = PlanInput::from_plan(&r.plan);
    Ok(form_page(
        &viewer,
        Some(&r),
        input,
        FieldErrors::default(),
        Vec::new(),
        StatusCode::OK,
    )
    .await?)
}

/// `POST /releases/{id}/edit`: a new revision of the plan, on the revision
/// the form was read at. An edit to an approved plan voids the approval,
/// and the notice says so.
pub(crate) async fn update(
    viewer: Viewer,
    origin: Origin,
    Path(id): Path<String>,
    Form(pairs): Form<Pairs>,
) -> PageResult {
    let before = load(&viewer, &id).await?;
    check_may_edit(&viewer, &origin, &before).await?;
    let input = PlanInput::from_pairs(&pairs);
    let (plan, mut errors, milestone_unread) = input.read();
    if !errors.is_empty() {
        with_rule_errors(&viewer, &plan, &mut errors, milestone_unread).await?;
        return Ok(form_page(
            &viewer,
            Some(&before),
            input,
            errors,
            Vec::new(),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await?);
    }
    let revision = value(&pairs, "revision").trim().parse::<i32>().ok();
    let saved = releases::edit(
        &viewer.state.pool,
        &viewer.user,
        &origin,
        before.id(),
        revision,
        Edit::Plan(plan),
    )
    .await;
    match saved {
        Ok(after) => Ok(redirect_with(
            &viewer,
            &page_of(&after),
            Notice::ReleaseSaved {
                number: after.row.number,
                revision: after.row.revision,
                was: edited_in(before.state, &after),
            },
        )),
        Err(e @ (AppError::Invalid { .. } | AppError::Fields(_))) => {
            let errors = field_errors(e)?;
            let status = StatusCode::UNPROCESSABLE_ENTITY;
            Ok(form_page(&viewer, Some(&before), input, errors, Vec::new(), status).await?)
        }
        Err(e) if is_refusal(&e) => {
            let status = e.status();
            let refused = refusal_sentences(&e);
            let errors = FieldErrors::default();
            Ok(form_page(&viewer, Some(&before), input, errors, refused, status).await?)
        }
        Err(e) => Err(e.into()),
    }
}

/// The state an edit was made in, as its notice tells it: an approval
/// voided, votes left on the revision before, or neither.
pub(super) fn edited_in(before: ReleaseState, after: &ReleaseView) -> ReleaseState {
    if releases::voided_approval(before, after) {
        ReleaseState::Approved
    } else if before == ReleaseState::InReview {
        ReleaseState::InReview
    } else {
        ReleaseState::Draft
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Pairs {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn unreadable_times_and_numbers_are_named_beside_their_field() {
        let input = PlanInput::from_pairs(&pairs(&[
            ("name", "Winter"),
            ("code_freeze", "2026-12-01T10:00"),
            ("go_no_go", "next Tuesday"),
            ("deployment", "2026-12-03 10:00"),
            ("phase_1_environment", "stage"),
            ("phase_1_soak", "half an hour"),
            ("phase_2_target", ""),
            ("rollback_max_minutes", "ten"),
            ("comm_1_audience", "Support"),
            ("comm_1_when", "soon"),
        ]));
        let (plan, errors, unread) = input.read();
        assert!(unread);
        assert!(errors.get("code_freeze").is_none());
        assert!(errors.get("go_no_go").unwrap().contains("such as"));
        assert!(errors.get("deployment").is_none());
        assert!(
            errors
                .get("hypercare_end")
                .unwrap()
                .contains("end of hypercare")
        );
        assert!(errors.get("phases").unwrap().starts_with("Phase 1: "));
        assert!(errors.get("rollback_max_minutes").is_some());
        assert!(
            errors
                .get("communications")
                .unwrap()
                .starts_with("Communication 1: ")
        );
        // Blank rows are left out.
        assert_eq!(plan.phases.len(), 1);
        assert_eq!(plan.communications.len(), 1);
    }

    #[test]
    fn a_stored_plan_fills_the_form_and_reads_back_the_same() {
        let at = |h: u32| {
            chrono::NaiveDate::from_ymd_opt(2026, 12, 1)
                .unwrap()
                .and_hms_opt(h, 0, 30)
                .unwrap()
                .and_utc()
        };
        let plan = ReleasePlan {
            name: "Winter".into(),
            version: "2026.12.1".into(),
            milestones: Milestones {
                code_freeze: at(1),
                go_no_go: at(2),
                deployment: at(3),
                hypercare_end: at(4),
            },
            test_strategy: TestStrategy {
                levels: vec![TestLevel::Unit, TestLevel::Security],
                entry_criteria: "Builds green.".into(),
                exit_criteria: "No open blocker.".into(),
                evidence: vec!["https://ci.example/1".into()],
            },
            phases: vec![Phase {
                environment: "prod".into(),
                target: "all".into(),
                soak_minutes: 30,
                proceed_criteria: "Quiet.".into(),
                abort_criteria: "Errors.".into(),
            }],
            rollback: RollbackPlan {
                triggers: "Errors.".into(),
                steps: "Redeploy.".into(),
                max_minutes: 20,
                irreversible: false,
                irreversible_steps: String::new(),
            },
            communications: vec![Communication {
                audience: "Support".into(),
                channel: "Email".into(),
                when: at(2),
                message: "Heads up.".into(),
            }],
        };
        let input = PlanInput::from_plan(&plan);
        assert_eq!(input.phases.len(), PHASE_ROWS);
        let (read, errors, _) = input.read();
        assert!(errors.is_empty());
        assert_eq!(read, plan);
    }

    #[test]
    fn each_change_is_named_once() {
        let input = PlanInput {
            changes: "CHG-1\nchg-1, CHG-2\n\n CHG-3 ".into(),
            ..PlanInput::blank()
        };
        assert_eq!(input.change_list(), ["CHG-1", "CHG-2", "CHG-3"]);
    }
}
