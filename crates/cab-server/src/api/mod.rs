//! The JSON API under `/api/v1`, documented by the OpenAPI document served at
//! `/api/openapi.json`. Routes and their documentation are registered together
//! (utoipa-axum), so neither can exist without the other.

mod audit;
mod auth;
mod calendar;
pub mod changes;
pub mod decisions;
pub mod deployments;
mod exceptions;
mod extract;
mod freezes;
pub mod idempotency;
mod me;
pub mod metrics;
pub mod releases;
pub mod reviews;
mod role_grants;
mod standard_templates;
mod users;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::Problem;
use crate::state::AppState;

pub use extract::{ApiPath, AppJson};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "CAB API",
        description = "Change advisory board: change requests, assessments, approvals and the audit trail. \
                       Errors are application/problem+json documents with a stable `code`.",
    ),
    components(schemas(Problem)),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "audit", description = "The audit trail, for auditors and administrators: every event, filtered and paged, and the exports of the events and of the approval trail as CSV or NDJSON streams; and the chain's signed checkpoints and their public keys, for anyone"),
        (name = "auth", description = "Access tokens and the caller"),
        (name = "changes", description = "Change requests: filing, editing, submitting, revisions and comments"),
        (name = "decisions", description = "Security assessments, CAB votes, the approval trail and the quorum policy"),
        (name = "deployments", description = "The deployment gate pipelines ask before they deploy, signed authorizations, and what became of each deployment"),
        (name = "freezes", description = "Periods in which the deployment gate deploys nothing they cover, declared and lifted by release managers and administrators"),
        (name = "releases", description = "Releases: changes that go out together under one plan (milestones, test strategy, deployment phases, rollback, communications), every edit a revision; CAB's go/no-go on the plan; the phases opened one after another, rolled back or cancelled"),
        (name = "reviews", description = "How a change ends: closing it with a close code, and its post-implementation review, owed for failed, emergency, break-glass, high-risk and incident-linked changes (a setting can owe one for every change), every edit a revision, signed off by someone who did not work on the change; its action items, and what is overdue"),
        (name = "metrics", description = "The measures of change, computed from the records on every request: deployment frequency, lead time for changes, change failure rate, failed-deployment recovery time, the share of emergency and break-glass changes, approval lead time by risk level, and what the records lack"),
        (name = "calendar", description = "The change calendar: what is planned when, the conflicts a window runs into and the free windows nearby, services' maintenance periods, the limit on production changes per hour, and personal calendar feeds"),
        (name = "templates", description = "Standard-change templates, approved once by CAB"),
        (name = "users", description = "Accounts, roles and service-account tokens (administrators); a decision role or the administrator role takes a second administrator's confirmation"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An access token from POST /api/v1/auth/token, or a service account's API token (cab_...).",
                    ))
                    .build(),
            ),
        );
    }
}

/// The API's routes and its OpenAPI document.
pub fn router() -> (axum::Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(auth::create_token))
        .routes(routes!(auth::logout))
        .routes(routes!(me::me))
        .routes(routes!(users::list_users, users::create_user))
        .routes(routes!(users::get_user))
        .routes(routes!(users::set_roles))
        .routes(routes!(users::disable_user))
        .routes(routes!(users::list_tokens, users::create_token))
        .routes(routes!(users::revoke_token))
        .routes(routes!(role_grants::list_role_grants))
        .routes(routes!(role_grants::confirm_role_grant))
        .routes(routes!(role_grants::cancel_role_grant))
        .routes(routes!(changes::list_changes, changes::create_change))
        .routes(routes!(changes::get_change, changes::patch_change))
        .routes(routes!(changes::submit_change))
        .routes(routes!(changes::withdraw_change))
        .routes(routes!(changes::cancel_change))
        .routes(routes!(changes::list_revisions))
        .routes(routes!(changes::list_comments, changes::add_comment))
        .routes(routes!(decisions::put_assessment))
        .routes(routes!(decisions::start_assessment))
        .routes(routes!(decisions::post_vote))
        .routes(routes!(decisions::get_approvals))
        .routes(routes!(decisions::get_quorum, decisions::put_quorum))
        .routes(routes!(decisions::cab_queue))
        .routes(routes!(
            standard_templates::list_templates,
            standard_templates::propose_template
        ))
        .routes(routes!(standard_templates::get_template))
        .routes(routes!(standard_templates::vote_template))
        .routes(routes!(standard_templates::retire_template))
        .routes(routes!(
            deployments::list_deployments,
            deployments::request_deployment
        ))
        .routes(routes!(deployments::dry_run))
        .routes(routes!(deployments::signing_keys))
        .routes(routes!(deployments::get_deployment))
        .routes(routes!(deployments::report_event))
        .routes(routes!(
            deployments::list_environments,
            deployments::put_environments
        ))
        .routes(routes!(
            deployments::get_account_environments,
            deployments::put_account_environments
        ))
        .routes(routes!(freezes::list_freezes, freezes::declare_freeze))
        .routes(routes!(freezes::get_freeze))
        .routes(routes!(freezes::lift_freeze))
        .routes(routes!(releases::list_releases, releases::create_release))
        .routes(routes!(releases::get_release, releases::edit_release))
        .routes(routes!(releases::add_release_change))
        .routes(routes!(releases::remove_release_change))
        .routes(routes!(releases::list_release_revisions))
        .routes(routes!(releases::submit_release))
        .routes(routes!(releases::vote_on_release))
        .routes(routes!(releases::advance_release))
        .routes(routes!(releases::roll_back_release))
        .routes(routes!(releases::cancel_release))
        .routes(routes!(metrics::get_metrics))
        .routes(routes!(reviews::close_change))
        .routes(routes!(reviews::get_review, reviews::put_review))
        .routes(routes!(reviews::sign_off_review))
        .routes(routes!(reviews::add_review_action))
        .routes(routes!(reviews::set_review_action_status))
        .routes(routes!(reviews::overdue_reviews))
        .routes(routes!(
            reviews::get_review_settings,
            reviews::put_review_settings
        ))
        .routes(routes!(calendar::calendar_entries))
        .routes(routes!(calendar::check_window))
        .routes(routes!(calendar::change_conflicts))
        .routes(routes!(
            calendar::list_maintenance_periods,
            calendar::add_maintenance_period
        ))
        .routes(routes!(calendar::remove_maintenance_period))
        .routes(routes!(
            calendar::get_calendar_settings,
            calendar::put_calendar_settings
        ))
        .routes(routes!(
            calendar::list_calendar_feeds,
            calendar::create_calendar_feed
        ))
        .routes(routes!(calendar::revoke_calendar_feed))
        .routes(routes!(
            exceptions::list_break_glass,
            exceptions::request_break_glass
        ))
        .routes(routes!(exceptions::get_break_glass))
        .routes(routes!(exceptions::confirm_break_glass))
        .routes(routes!(exceptions::observe))
        .routes(routes!(exceptions::list_findings))
        .routes(routes!(exceptions::resolve_finding))
        .routes(routes!(audit::list_events))
        .routes(routes!(audit::export_events))
        .routes(routes!(audit::export_approvals))
        .routes(routes!(audit::list_checkpoints, audit::sign_checkpoint))
        .routes(routes!(audit::checkpoint_keys))
        .routes(routes!(audit::evidence_pack))
        .split_for_parts()
}
