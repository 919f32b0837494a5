//! One-time notices: after a form's action succeeds, the handler redirects
//! (303) and sets a short-lived cookie naming what happened; the next page
//! says so once, near the top of `<main>`, and the cookie is cleared. It
//! works without JavaScript.
//!
//! The cookie carries a code from the closed list below (and numbers or
//! codes of domain values), never text: the sentence is chosen here. It is
//! signed with a key derived from `CAB_SECRET_KEY` and bound to the session,
//! so nobody else can make a page say anything, or replay a notice into
//! another session.

use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use cab_domain::approval::VoteChoice;
use cab_domain::change::{ChangeKey, ChangeState};
use cab_domain::deployment::DeploymentState;
use cab_domain::release::ReleaseState;
use cab_domain::review::{ActionStatus, CloseCode};
use cab_domain::standard_template::TemplateState;
use uuid::Uuid;

use super::{Viewer, expire_cookie};
use crate::crypto::Keys;

pub const NOTICE_COOKIE: &str = "cab_notice";
/// Long enough to follow the redirect, short enough not to linger.
const MAX_AGE_SECONDS: u32 = 60;

/// What just happened, as the next page tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    ChangeCreated {
        number: i64,
    },
    ChangeSaved {
        number: i64,
    },
    ChangeSubmitted {
        number: i64,
        state: ChangeState,
    },
    ChangeWithdrawn {
        number: i64,
    },
    ChangeCancelled {
        number: i64,
    },
    Commented {
        number: i64,
    },
    AssessmentStarted {
        number: i64,
    },
    Assessed {
        number: i64,
        state: ChangeState,
    },
    Voted {
        number: i64,
        revision: i32,
        choice: VoteChoice,
        state: ChangeState,
    },
    /// The change is closed with `code`; `owed`: its review is owed and
    /// not signed off.
    ChangeClosed {
        number: i64,
        code: CloseCode,
        owed: bool,
    },
    /// A new revision of the review; `amended`: it replaces a signed-off one.
    ReviewSaved {
        number: i64,
        revision: i32,
        amended: bool,
    },
    /// Saved as it was: no new revision.
    ReviewUnchanged {
        number: i64,
    },
    ReviewSignedOff {
        number: i64,
        revision: i32,
    },
    ReviewActionAdded {
        number: i64,
    },
    ReviewActionUpdated {
        number: i64,
        status: ActionStatus,
    },
    ReviewSettingsSaved,
    /// A deployment's initiator or executor reported what became of it.
    DeploymentReported {
        number: i64,
        state: DeploymentState,
    },
    TemplateProposed,
    TemplateVoted {
        choice: VoteChoice,
        state: TemplateState,
    },
    TemplateRetired,
    RolesSaved,
    RolesRequested,
    RolesConfirmed,
    RoleRequestCancelled,
    AccountDisabled,
    TokenRevoked,
    QuorumSaved,
    BreakGlassRequested {
        number: i64,
    },
    BreakGlassConfirmed {
        number: i64,
    },
    FindingResolved,
    FreezeDeclared,
    FreezeLifted,
    EnvironmentsSaved,
    PipelineEnvironmentsSaved,
    /// A calendar feed was made; its address is on the page itself, once.
    FeedCreated,
    FeedRevoked,
    MaintenancePeriodAdded,
    MaintenancePeriodRemoved,
    /// The most production changes one hour may hold; `None`: no limit.
    ProductionLimitSet {
        limit: Option<u32>,
    },
    ReleasePlanned {
        number: i64,
    },
    /// A new revision of the plan; `was` is the state it was edited in.
    ReleaseSaved {
        number: i64,
        revision: i32,
        was: ReleaseState,
    },
    ReleaseChangeAdded {
        number: i64,
        change: i64,
        revision: i32,
        was: ReleaseState,
    },
    ReleaseChangeRemoved {
        number: i64,
        change: i64,
        revision: i32,
        was: ReleaseState,
    },
    ReleaseSubmitted {
        number: i64,
    },
    ReleaseVoted {
        number: i64,
        revision: i32,
        choice: VoteChoice,
        state: ReleaseState,
    },
    /// Started, a phase opened (1-based), or completed.
    ReleaseAdvanced {
        number: i64,
        state: ReleaseState,
        phase: i32,
    },
    ReleaseRolledBack {
        number: i64,
        phase: i32,
    },
    ReleaseCancelled {
        number: i64,
    },
}

fn release_key(number: i64) -> String {
    crate::releases::key(number)
}

/// What a new revision did to CAB's go/no-go, by the state the plan was
/// edited in.
fn revision_effect(revision: i32, was: ReleaseState) -> String {
    let before = revision - 1;
    match was {
        ReleaseState::Approved => {
            format!(" CAB's approval of revision {before} is void: the plan needs a new go/no-go.")
        }
        ReleaseState::InReview => format!(
            " Votes on revision {before} no longer count: CAB decides on revision {revision}."
        ),
        _ => String::new(),
    }
}

/// What a decision led to, as a sentence after the notice's first one.
fn outcome(number: i64, state: ChangeState) -> String {
    match state {
        ChangeState::Approved => format!(" {} is now approved.", ChangeKey(number)),
        ChangeState::Rejected => format!(" {} is rejected.", ChangeKey(number)),
        ChangeState::ChangesRequested => {
            format!(
                " {} goes back to its authors for changes.",
                ChangeKey(number)
            )
        }
        ChangeState::InCabReview => format!(" {} is now in CAB review.", ChangeKey(number)),
        _ => String::new(),
    }
}

impl Notice {
    /// The sentence people read.
    pub fn sentence(self) -> String {
        use Notice::*;
        match self {
            ChangeCreated { number } => format!(
                "{} is saved as a draft. Submit it for review when it is complete.",
                ChangeKey(number),
            ),
            ChangeSaved { number } => format!("Your changes to {} are saved.", ChangeKey(number)),
            ChangeSubmitted {
                number,
                state: ChangeState::Approved,
            } => format!(
                "{} is submitted and approved: it follows an approved standard-change template.",
                ChangeKey(number),
            ),
            ChangeSubmitted { number, .. } => format!(
                "{} is submitted for review. Security reviewers and CAB members can now see it in their queues.",
                ChangeKey(number),
            ),
            ChangeWithdrawn { number } => format!("{} is withdrawn.", ChangeKey(number)),
            ChangeCancelled { number } => format!("{} is cancelled.", ChangeKey(number)),
            Commented { number } => format!("Your comment on {} is posted.", ChangeKey(number)),
            AssessmentStarted { number } => {
                format!(
                    "You have taken {} into assessment. Write the assessment below.",
                    ChangeKey(number)
                )
            }
            Assessed { number, state } => format!(
                "Your security assessment of {} is saved.{}",
                ChangeKey(number),
                outcome(number, state),
            ),
            Voted {
                number,
                revision,
                choice,
                state,
            } => {
                let what = match choice {
                    VoteChoice::Approve => "to approve",
                    VoteChoice::Reject => "to reject",
                    VoteChoice::RequestChanges => "to request changes to",
                };
                format!(
                    "Your vote {what} revision {revision} of {} is recorded.{}",
                    ChangeKey(number),
                    outcome(number, state),
                )
            }
            ChangeClosed { number, code, owed } => format!(
                "{} is closed as {}.{}",
                ChangeKey(number),
                code.label().to_lowercase(),
                if owed {
                    " Its post-implementation review is owed: write it below."
                } else {
                    ""
                }
            ),
            ReviewSaved {
                number,
                revision,
                amended,
            } => format!(
                "Revision {revision} of the review of {} is saved.{}",
                ChangeKey(number),
                if amended {
                    " It amends the signed-off review, so it needs signing off again."
                } else {
                    " Once it is complete, someone who did not work on the change signs it off."
                }
            ),
            ReviewUnchanged { number } => format!(
                "Nothing in the review of {} changed, so no new revision was made.",
                ChangeKey(number)
            ),
            ReviewSignedOff { number, revision } => format!(
                "Revision {revision} of the review of {} is signed off. A later edit makes a new revision, which needs signing off again.",
                ChangeKey(number)
            ),
            ReviewActionAdded { number } => format!(
                "The action item is added to the review of {}. Its owner sees it on their dashboard once it is overdue.",
                ChangeKey(number)
            ),
            ReviewActionUpdated { number, status } => format!(
                "The action item of the review of {} is now marked {}.",
                ChangeKey(number),
                status.label().to_lowercase()
            ),
            ReviewSettingsSaved => {
                "Review settings saved. They apply to reviews owed from now on.".into()
            }
            DeploymentReported { number, state } => match state {
                DeploymentState::Started => format!(
                    "DEP-{number} is recorded as started and its authorization is spent. Report whether it succeeded or failed once it is done."
                ),
                DeploymentState::Aborted => format!(
                    "DEP-{number} is aborted: its authorization can no longer start it."
                ),
                other => format!(
                    "DEP-{number} is recorded as {}.",
                    other.label().to_lowercase()
                ),
            },
            TemplateProposed => {
                "The template is proposed. CAB members vote on it before anyone can use it.".into()
            }
            TemplateVoted { choice, state } => {
                let what = match choice {
                    VoteChoice::Approve => "to approve",
                    VoteChoice::Reject => "to reject",
                    VoteChoice::RequestChanges => "to request changes to",
                };
                let after = match state {
                    TemplateState::Approved => {
                        " The template is now approved: engineers can make changes from it."
                    }
                    TemplateState::Retired => " The template is rejected.",
                    TemplateState::Proposed => "",
                };
                format!("Your vote {what} this template is recorded.{after}")
            }
            TemplateRetired => {
                "The template is retired: no new changes can be made from it.".into()
            }
            RolesSaved => "Roles saved. The account's sessions have ended.".into(),
            RolesRequested => "Saved. A CAB, security, release or administrator role is only requested: it holds once a second administrator confirms it.".into(),
            RolesConfirmed => "Roles confirmed: the account holds them now. Its sessions have ended.".into(),
            RoleRequestCancelled => "Role request cancelled. The account keeps the roles it holds.".into(),
            AccountDisabled => "Account disabled. Its sessions have ended.".into(),
            TokenRevoked => "Token revoked. It no longer works.".into(),
            QuorumSaved => "Quorum policy saved. It applies to every decision from now on.".into(),
            BreakGlassRequested { number } => format!("Break-glass BG-{number} asked for. A second person, a release manager or CAB member who did not work on the change, must confirm it within 30 minutes."),
            BreakGlassConfirmed { number } => format!("Break-glass BG-{number} confirmed. For the next 60 minutes it lets one production deployment past the window, freezes and approval, asked for by the person who requested it."),
            FindingResolved => "Finding resolved. It stays on record with what it was.".into(),
            FreezeDeclared => "Freeze declared. While it is in force the deployment gate refuses every deployment it covers.".into(),
            FreezeLifted => "Freeze lifted. Deployments it held back may go ahead.".into(),
            EnvironmentsSaved => "Environments saved. The deployment gate applies their rules from now on.".into(),
            PipelineEnvironmentsSaved => "Saved where this pipeline may deploy.".into(),
            FeedCreated => "Feed made. Copy its address below into your calendar app now: it is shown this once.".into(),
            FeedRevoked => "Feed revoked. Its address shows nothing from now on; remove the subscription from your calendar app.".into(),
            MaintenancePeriodAdded => "Maintenance period added. Changes to the service are checked against it from now on.".into(),
            MaintenancePeriodRemoved => "Maintenance period removed. Changes to the service are no longer checked against it.".into(),
            ProductionLimitSet { limit: Some(1) } => "Saved: at most one production change in one hour from now on.".into(),
            ProductionLimitSet { limit: Some(n) } => format!("Saved: at most {n} production changes in one hour from now on."),
            ProductionLimitSet { limit: None } => "Saved: production changes are no longer limited per hour.".into(),
            ReleasePlanned { number } => format!(
                "{} is planned as a draft. Submit it for CAB's go/no-go when the plan is complete.",
                release_key(number)
            ),
            ReleaseSaved {
                number: _,
                revision,
                was,
            } => format!(
                "Revision {revision} saved.{}",
                revision_effect(revision, was)
            ),
            ReleaseChangeAdded {
                number,
                change,
                revision,
                was,
            } => format!(
                "{} is added to {} in revision {revision}.{}",
                ChangeKey(change),
                release_key(number),
                revision_effect(revision, was)
            ),
            ReleaseChangeRemoved {
                number,
                change,
                revision,
                was,
            } => format!(
                "{} is taken out of {} in revision {revision}.{}",
                ChangeKey(change),
                release_key(number),
                revision_effect(revision, was)
            ),
            ReleaseSubmitted { number } => format!(
                "{} is submitted for CAB's go/no-go. CAB members can now vote on it.",
                release_key(number)
            ),
            ReleaseVoted {
                number,
                revision,
                choice,
                state,
            } => {
                let what = match choice {
                    VoteChoice::Approve => "to approve",
                    VoteChoice::Reject => "to reject",
                    VoteChoice::RequestChanges => "to request changes to",
                };
                let key = release_key(number);
                let after = match state {
                    ReleaseState::Approved => {
                        format!(" {key} is approved: the release manager can start it.")
                    }
                    ReleaseState::Draft => format!(" {key} goes back to draft."),
                    _ => String::new(),
                };
                format!("Your vote {what} revision {revision} of {key} is recorded.{after}")
            }
            ReleaseAdvanced {
                number,
                state: ReleaseState::Completed,
                ..
            } => format!("{} is complete.", release_key(number)),
            ReleaseAdvanced {
                number, phase: 1, ..
            } => format!("{} has started: phase 1 is open.", release_key(number)),
            ReleaseAdvanced { number, phase, .. } => {
                format!("Phase {phase} of {} is open.", release_key(number))
            }
            ReleaseRolledBack { number, phase } => format!(
                "Phase {phase} of {} is rolled back; the phases after it do not open.",
                release_key(number)
            ),
            ReleaseCancelled { number } => format!(
                "{} is cancelled. Its changes may go out by themselves or with another release.",
                release_key(number)
            ),
        }
    }

    /// The cookie's content before signing: a code and its arguments, each
    /// a number or the code of a domain value, joined by `.`.
    fn encode(self) -> String {
        use Notice::*;
        match self {
            ChangeCreated { number } => format!("created.{number}"),
            ChangeSaved { number } => format!("saved.{number}"),
            ChangeSubmitted { number, state } => format!("submitted.{number}.{}", state.as_str()),
            ChangeWithdrawn { number } => format!("withdrawn.{number}"),
            ChangeCancelled { number } => format!("cancelled.{number}"),
            Commented { number } => format!("commented.{number}"),
            AssessmentStarted { number } => format!("assessing.{number}"),
            Assessed { number, state } => format!("assessed.{number}.{}", state.as_str()),
            Voted {
                number,
                revision,
                choice,
                state,
            } => format!(
                "voted.{number}.{revision}.{}.{}",
                choice.as_str(),
                state.as_str()
            ),
            ChangeClosed { number, code, owed } => {
                format!("closed.{number}.{}.{}", code.as_str(), u8::from(owed))
            }
            ReviewSaved {
                number,
                revision,
                amended,
            } => format!("review_saved.{number}.{revision}.{}", u8::from(amended)),
            ReviewUnchanged { number } => format!("review_unchanged.{number}"),
            ReviewSignedOff { number, revision } => {
                format!("review_signed_off.{number}.{revision}")
            }
            ReviewActionAdded { number } => format!("review_action_added.{number}"),
            ReviewActionUpdated { number, status } => {
                format!("review_action_updated.{number}.{}", status.as_str())
            }
            ReviewSettingsSaved => "review_settings_saved".into(),
            DeploymentReported { number, state } => {
                format!("deployment_reported.{number}.{}", state.as_str())
            }
            TemplateProposed => "template_proposed".into(),
            TemplateVoted { choice, state } => {
                format!("template_voted.{}.{}", choice.as_str(), state.as_str())
            }
            TemplateRetired => "template_retired".into(),
            RolesSaved => "roles_saved".into(),
            RolesRequested => "roles_requested".into(),
            RolesConfirmed => "roles_confirmed".into(),
            RoleRequestCancelled => "role_request_cancelled".into(),
            AccountDisabled => "account_disabled".into(),
            TokenRevoked => "token_revoked".into(),
            QuorumSaved => "quorum_saved".into(),
            BreakGlassRequested { number } => format!("break_glass_requested.{number}"),
            BreakGlassConfirmed { number } => format!("break_glass_confirmed.{number}"),
            FindingResolved => "finding_resolved".into(),
            FreezeDeclared => "freeze_declared".into(),
            FreezeLifted => "freeze_lifted".into(),
            EnvironmentsSaved => "environments_saved".into(),
            PipelineEnvironmentsSaved => "pipeline_environments_saved".into(),
            FeedCreated => "feed_created".into(),
            FeedRevoked => "feed_revoked".into(),
            MaintenancePeriodAdded => "maintenance_added".into(),
            MaintenancePeriodRemoved => "maintenance_removed".into(),
            ProductionLimitSet { limit: Some(n) } => format!("production_limit.{n}"),
            ProductionLimitSet { limit: None } => "production_limit.none".into(),
            ReleasePlanned { number } => format!("release_planned.{number}"),
            ReleaseSaved {
                number,
                revision,
                was,
            } => format!("release_saved.{number}.{revision}.{}", was.as_str()),
            ReleaseChangeAdded {
                number,
                change,
                revision,
                was,
            } => format!(
                "release_added.{number}.{change}.{revision}.{}",
                was.as_str()
            ),
            ReleaseChangeRemoved {
                number,
                change,
                revision,
                was,
            } => format!(
                "release_removed.{number}.{change}.{revision}.{}",
                was.as_str()
            ),
            ReleaseSubmitted { number } => format!("release_submitted.{number}"),
            ReleaseVoted {
                number,
                revision,
                choice,
                state,
            } => format!(
                "release_voted.{number}.{revision}.{}.{}",
                choice.as_str(),
                state.as_str()
            ),
            ReleaseAdvanced {
                number,
                state,
                phase,
            } => format!("release_advanced.{number}.{}.{phase}", state.as_str()),
            ReleaseRolledBack { number, phase } => {
                format!("release_rolled_back.{number}.{phase}")
            }
            ReleaseCancelled { number } => format!("release_cancelled.{number}"),
        }
    }

    fn decode(s: &str) -> Option<Notice> {
        use Notice::*;
        let parts: Vec<&str> = s.split('.').collect();
        let number = |i: usize| parts.get(i).and_then(|n| n.parse::<i64>().ok());
        let state = |i: usize| parts.get(i).and_then(|x| ChangeState::parse(x));
        let choice = |i: usize| parts.get(i).and_then(|x| VoteChoice::parse(x));
        let release_state = |i: usize| parts.get(i).and_then(|x| ReleaseState::parse(x));
        let flag = |i: usize| match parts.get(i) {
            Some(&"1") => Some(true),
            Some(&"0") => Some(false),
            _ => None,
        };
        let notice = match (parts[0], parts.len()) {
            ("created", 2) => ChangeCreated { number: number(1)? },
            ("saved", 2) => ChangeSaved { number: number(1)? },
            ("submitted", 3) => ChangeSubmitted {
                number: number(1)?,
                state: state(2)?,
            },
            ("withdrawn", 2) => ChangeWithdrawn { number: number(1)? },
            ("cancelled", 2) => ChangeCancelled { number: number(1)? },
            ("commented", 2) => Commented { number: number(1)? },
            ("assessing", 2) => AssessmentStarted { number: number(1)? },
            ("assessed", 3) => Assessed {
                number: number(1)?,
                state: state(2)?,
            },
            ("voted", 5) => Voted {
                number: number(1)?,
                revision: parts[2].parse().ok()?,
                choice: choice(3)?,
                state: state(4)?,
            },
            ("closed", 4) => ChangeClosed {
                number: number(1)?,
                code: CloseCode::parse(parts[2])?,
                owed: flag(3)?,
            },
            ("review_saved", 4) => ReviewSaved {
                number: number(1)?,
                revision: parts[2].parse().ok()?,
                amended: flag(3)?,
            },
            ("review_unchanged", 2) => ReviewUnchanged { number: number(1)? },
            ("review_signed_off", 3) => ReviewSignedOff {
                number: number(1)?,
                revision: parts[2].parse().ok()?,
            },
            ("review_action_added", 2) => ReviewActionAdded { number: number(1)? },
            ("review_action_updated", 3) => ReviewActionUpdated {
                number: number(1)?,
                status: ActionStatus::parse(parts[2])?,
            },
            ("review_settings_saved", 1) => ReviewSettingsSaved,
            ("deployment_reported", 3) => DeploymentReported {
                number: number(1)?,
                state: DeploymentState::parse(parts[2])?,
            },
            ("template_proposed", 1) => TemplateProposed,
            ("template_voted", 3) => TemplateVoted {
                choice: choice(1)?,
                state: TemplateState::parse(parts[2])?,
            },
            ("template_retired", 1) => TemplateRetired,
            ("roles_saved", 1) => RolesSaved,
            ("roles_requested", 1) => RolesRequested,
            ("roles_confirmed", 1) => RolesConfirmed,
            ("role_request_cancelled", 1) => RoleRequestCancelled,
            ("account_disabled", 1) => AccountDisabled,
            ("token_revoked", 1) => TokenRevoked,
            ("quorum_saved", 1) => QuorumSaved,
            ("break_glass_requested", 2) => BreakGlassRequested { number: number(1)? },
            ("break_glass_confirmed", 2) => BreakGlassConfirmed { number: number(1)? },
            ("finding_resolved", 1) => FindingResolved,
            ("freeze_declared", 1) => FreezeDeclared,
            ("freeze_lifted", 1) => FreezeLifted,
            ("environments_saved", 1) => EnvironmentsSaved,
            ("pipeline_environments_saved", 1) => PipelineEnvironmentsSaved,
            ("feed_created", 1) => FeedCreated,
            ("feed_revoked", 1) => FeedRevoked,
            ("maintenance_added", 1) => MaintenancePeriodAdded,
            ("maintenance_removed", 1) => MaintenancePeriodRemoved,
            ("production_limit", 2) => ProductionLimitSet {
                limit: match parts[1] {
                    "none" => None,
                    n => Some(n.parse().ok()?),
                },
            },
            ("release_planned", 2) => ReleasePlanned { number: number(1)? },
            ("release_saved", 4) => ReleaseSaved {
                number: number(1)?,
                revision: parts[2].parse().ok()?,
                was: release_state(3)?,
            },
            ("release_added", 5) => ReleaseChangeAdded {
                number: number(1)?,
                change: number(2)?,
                revision: parts[3].parse().ok()?,
                was: release_state(4)?,
            },
            ("release_removed", 5) => ReleaseChangeRemoved {
                number: number(1)?,
                change: number(2)?,
                revision: parts[3].parse().ok()?,
                was: release_state(4)?,
            },
            ("release_submitted", 2) => ReleaseSubmitted { number: number(1)? },
            ("release_voted", 5) => ReleaseVoted {
                number: number(1)?,
                revision: parts[2].parse().ok()?,
                choice: choice(3)?,
                state: release_state(4)?,
            },
            ("release_advanced", 4) => ReleaseAdvanced {
                number: number(1)?,
                state: release_state(2)?,
                phase: parts[3].parse().ok()?,
            },
            ("release_rolled_back", 3) => ReleaseRolledBack {
                number: number(1)?,
                phase: parts[2].parse().ok()?,
            },
            ("release_cancelled", 2) => ReleaseCancelled { number: number(1)? },
            _ => return None,
        };
        Some(notice)
    }
}

/// What the tag signs: the notice, bound to one session.
fn signed_message(session: Uuid, encoded: &str) -> String {
    format!("notice:{session}:{encoded}")
}

/// The cookie value for `notice` in `session`: `<code>.<tag>`.
pub fn cookie_value(keys: &Keys, session: Uuid, notice: Notice) -> String {
    let encoded = notice.encode();
    let tag = keys.notice_tag(&signed_message(session, &encoded));
    format!("{encoded}.{tag}")
}

/// The notice a cookie value names, if the server set it for this session.
pub fn read(keys: &Keys, session: Uuid, value: &str) -> Option<Notice> {
    let (encoded, tag) = value.rsplit_once('.')?;
    if !keys.notice_matches(&signed_message(session, encoded), tag) {
        return None;
    }
    Notice::decode(encoded)
}

/// A 303 to `to` that leaves `notice` for the next page.
pub fn redirect_with(viewer: &Viewer, to: &str, notice: Notice) -> Response {
    let mut resp = Redirect::to(to).into_response();
    let Some(session) = viewer.user.session else {
        return resp;
    };
    let cookie = format!(
        "{NOTICE_COOKIE}={}; Max-Age={MAX_AGE_SECONDS}; {}",
        cookie_value(&viewer.state.keys, session, notice),
        super::cookie_attrs(&viewer.state)
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

fn sets_notice(resp: &Response) -> bool {
    resp.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.starts_with(&format!("{NOTICE_COOKIE}=")))
}

/// Clears the notice cookie once a page has been shown with it: any answer
/// that is not a redirect and does not leave a new notice.
pub async fn clear_when_shown(req: Request, next: Next) -> Response {
    let had_notice = crate::cookies::has(req.headers(), NOTICE_COOKIE);
    let mut resp = next.run(req).await;
    if had_notice
        && !resp.status().is_redirection()
        && !sets_notice(&resp)
        && let Ok(v) = HeaderValue::from_str(&expire_cookie(NOTICE_COOKIE))
    {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<Notice> {
        use Notice::*;
        vec![
            ChangeCreated { number: 1 },
            ChangeSaved { number: 2 },
            ChangeSubmitted {
                number: 3,
                state: ChangeState::Submitted,
            },
            ChangeSubmitted {
                number: 3,
                state: ChangeState::Approved,
            },
            ChangeWithdrawn { number: 4 },
            ChangeCancelled { number: 5 },
            Commented { number: 6 },
            AssessmentStarted { number: 7 },
            Assessed {
                number: 8,
                state: ChangeState::InCabReview,
            },
            Voted {
                number: 9,
                revision: 2,
                choice: VoteChoice::RequestChanges,
                state: ChangeState::ChangesRequested,
            },
            ChangeClosed {
                number: 10,
                code: CloseCode::SuccessfulWithIssues,
                owed: true,
            },
            ChangeClosed {
                number: 10,
                code: CloseCode::Successful,
                owed: false,
            },
            ReviewSaved {
                number: 10,
                revision: 2,
                amended: true,
            },
            ReviewSaved {
                number: 10,
                revision: 1,
                amended: false,
            },
            ReviewUnchanged { number: 10 },
            ReviewSignedOff {
                number: 10,
                revision: 2,
            },
            ReviewActionAdded { number: 10 },
            ReviewActionUpdated {
                number: 10,
                status: ActionStatus::InProgress,
            },
            ReviewSettingsSaved,
            DeploymentReported {
                number: 11,
                state: DeploymentState::RolledBack,
            },
            DeploymentReported {
                number: 11,
                state: DeploymentState::Started,
            },
            TemplateProposed,
            TemplateVoted {
                choice: VoteChoice::Approve,
                state: TemplateState::Approved,
            },
            TemplateRetired,
            RolesSaved,
            RolesRequested,
            RolesConfirmed,
            RoleRequestCancelled,
            AccountDisabled,
            TokenRevoked,
            QuorumSaved,
            BreakGlassRequested { number: 4 },
            BreakGlassConfirmed { number: 4 },
            FindingResolved,
            FreezeDeclared,
            FreezeLifted,
            EnvironmentsSaved,
            PipelineEnvironmentsSaved,
            FeedCreated,
            FeedRevoked,
            MaintenancePeriodAdded,
            MaintenancePeriodRemoved,
            ProductionLimitSet { limit: Some(1) },
            ProductionLimitSet { limit: Some(12) },
            ProductionLimitSet { limit: None },
            ReleasePlanned { number: 3 },
            ReleaseSaved {
                number: 3,
                revision: 4,
                was: ReleaseState::Approved,
            },
            ReleaseChangeAdded {
                number: 3,
                change: 12,
                revision: 2,
                was: ReleaseState::InReview,
            },
            ReleaseChangeRemoved {
                number: 3,
                change: 12,
                revision: 3,
                was: ReleaseState::Draft,
            },
            ReleaseSubmitted { number: 3 },
            ReleaseVoted {
                number: 3,
                revision: 2,
                choice: VoteChoice::RequestChanges,
                state: ReleaseState::Draft,
            },
            ReleaseAdvanced {
                number: 3,
                state: ReleaseState::InProgress,
                phase: 2,
            },
            ReleaseAdvanced {
                number: 3,
                state: ReleaseState::Completed,
                phase: 0,
            },
            ReleaseRolledBack {
                number: 3,
                phase: 2,
            },
            ReleaseCancelled { number: 3 },
        ]
    }

    #[test]
    fn every_notice_survives_its_cookie() {
        let keys = Keys::new(b"a secret key that is long enough for tests");
        let sid = Uuid::from_u128(1);
        for n in all() {
            let value = cookie_value(&keys, sid, n);
            assert!(
                value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)),
                "{value}"
            );
            assert_eq!(read(&keys, sid, &value), Some(n), "{value}");
            assert!(!n.sentence().contains('_'), "{}", n.sentence());
        }
    }

    #[test]
    fn only_the_server_writes_notices_and_only_for_one_session() {
        let keys = Keys::new(b"a secret key that is long enough for tests");
        let sid = Uuid::from_u128(1);
        let value = cookie_value(&keys, sid, Notice::ChangeCreated { number: 12 });
        // Another session, another key, a changed number, no tag: nothing.
        assert_eq!(read(&keys, Uuid::from_u128(2), &value), None);
        let other = Keys::new(b"another secret key that is long enough!!");
        assert_eq!(read(&other, sid, &value), None);
        let forged = value.replacen("created.12", "created.13", 1);
        assert_eq!(read(&keys, sid, &forged), None);
        assert_eq!(read(&keys, sid, "created.12"), None);
        assert_eq!(read(&keys, sid, "<script>alert(1)</script>"), None);
    }

    #[test]
    fn an_edit_of_an_approved_plan_says_the_approval_is_void() {
        let n = Notice::ReleaseSaved {
            number: 1,
            revision: 3,
            was: ReleaseState::Approved,
        };
        assert_eq!(
            n.sentence(),
            "Revision 3 saved. CAB's approval of revision 2 is void: the plan needs a new go/no-go."
        );
    }

    #[test]
    fn a_vote_that_settles_the_change_says_so() {
        let n = Notice::Voted {
            number: 12,
            revision: 2,
            choice: VoteChoice::Approve,
            state: ChangeState::Approved,
        };
        assert_eq!(
            n.sentence(),
            "Your vote to approve revision 2 of CHG-12 is recorded. CHG-12 is now approved."
        );
    }
}
