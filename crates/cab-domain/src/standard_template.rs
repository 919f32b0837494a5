//! Standard-change templates: routine, low-risk, repeatable changes that CAB
//! approves once. A change made from an approved template is approved when
//! it is submitted; retiring the template stops new ones.

use uuid::Uuid;

use crate::Actor;
use crate::change::{ChangeContent, ChangeType, FieldError};
use crate::risk::{RiskLevel, assess};
use crate::{Denial, Role, text};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateState {
    Proposed,
    Approved,
    Retired,
}

impl TemplateState {
    pub fn as_str(self) -> &'static str {
        match self {
            TemplateState::Proposed => "proposed",
            TemplateState::Approved => "approved",
            TemplateState::Retired => "retired",
        }
    }

    /// The state as people read it.
    pub fn label(self) -> &'static str {
        match self {
            TemplateState::Proposed => "Proposed",
            TemplateState::Approved => "Approved",
            TemplateState::Retired => "Retired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            TemplateState::Proposed,
            TemplateState::Approved,
            TemplateState::Retired,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
    }
}

impl crate::Vocabulary for TemplateState {
    const ALL: &'static [Self] = &[
        TemplateState::Proposed,
        TemplateState::Approved,
        TemplateState::Retired,
    ];

    fn as_str(self) -> &'static str {
        TemplateState::as_str(self)
    }

    fn label(self) -> &'static str {
        TemplateState::label(self)
    }

    fn parse(s: &str) -> Option<Self> {
        TemplateState::parse(s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateAction {
    Propose,
    Vote,
    Retire,
    Use,
}

impl TemplateAction {
    pub fn as_str(self) -> &'static str {
        match self {
            TemplateAction::Propose => "template.propose",
            TemplateAction::Vote => "template.vote",
            TemplateAction::Retire => "template.retire",
            TemplateAction::Use => "template.use",
        }
    }
}

/// Whether `actor` may act on a template in `state` proposed by `proposer`.
pub fn check_template_action(
    actor: &Actor,
    state: Option<TemplateState>,
    proposer: Option<Uuid>,
    action: TemplateAction,
) -> Result<(), Denial> {
    let cab_or_admin = actor.roles.contains(Role::CabMember) || actor.roles.contains(Role::Admin);
    match action {
        TemplateAction::Propose | TemplateAction::Retire => {
            if actor.is_service || !cab_or_admin {
                return Err(Denial::new(
                    "cab_or_admin_required",
                    "Only CAB members and administrators propose or retire standard-change templates.",
                ));
            }
            if action == TemplateAction::Retire && state == Some(TemplateState::Retired) {
                return Err(Denial::new(
                    "template_retired",
                    "This template is already retired.",
                ));
            }
            Ok(())
        }
        TemplateAction::Vote => {
            if actor.is_service {
                return Err(Denial::new(
                    "service_account",
                    "Service accounts are for pipelines: they never vote.",
                ));
            }
            if proposer == Some(actor.id) {
                return Err(Denial::new(
                    "self_approval",
                    "You proposed this template, so you cannot vote on it; other CAB members decide.",
                ));
            }
            if !actor.roles.contains(Role::CabMember) {
                return Err(Denial::new(
                    "cab_member_required",
                    "Only CAB members vote on templates.",
                ));
            }
            if state != Some(TemplateState::Proposed) {
                return Err(Denial::new(
                    "not_under_review",
                    "This template is not awaiting a decision.",
                ));
            }
            Ok(())
        }
        TemplateAction::Use => match state {
            Some(TemplateState::Approved) => Ok(()),
            Some(TemplateState::Retired) => Err(Denial::new(
                "template_retired",
                "This standard-change template has been retired; file a normal change instead.",
            )),
            _ => Err(Denial::new(
                "template_not_approved",
                "This standard-change template has not been approved by CAB yet.",
            )),
        },
    }
}

/// A template must describe a complete, low-risk change.
pub fn validate_template(name: &str, content: &ChangeContent) -> Vec<FieldError> {
    let mut errors = content.validate();
    for field in ["implementation_plan", "test_plan", "rollback_plan"] {
        let empty = match field {
            "implementation_plan" => content.implementation_plan.trim().is_empty(),
            "test_plan" => content.test_plan.trim().is_empty(),
            _ => content.rollback_plan.trim().is_empty(),
        };
        if empty {
            errors.push(FieldError {
                field: match field {
                    "implementation_plan" => "implementation_plan",
                    "test_plan" => "test_plan",
                    _ => "rollback_plan",
                },
                message: "A standard change fixes its plans: this one is required.".into(),
            });
        }
    }
    if content.services.is_empty() {
        errors.push(FieldError {
            field: "services",
            message: "Name the services CAB approves this template for: a change from it stays within them.".into(),
        });
    }
    if content.environments.is_empty() {
        errors.push(FieldError {
            field: "environments",
            message: "Choose the environments CAB approves this template for: a change from it stays within them.".into(),
        });
    }
    if let Err(e) = text::check_name("name", name) {
        errors.push(e);
    } else if name.trim().is_empty() || name.chars().count() > 200 {
        errors.push(FieldError {
            field: "name",
            message: "Give the template a name of 1 to 200 characters.".into(),
        });
    }
    if errors
        .iter()
        .all(|e| e.field != "impact" && e.field != "likelihood")
        && assess(&content.risk).level != RiskLevel::Low
    {
        errors.push(FieldError {
            field: "impact",
            message: "Standard changes are low-risk: these answers give a higher level.".into(),
        });
    }
    errors
}

/// Fields a change made from a template may not change.
pub const FIXED_FIELDS: [&str; 12] = [
    "type",
    "category",
    "implementation_plan",
    "test_plan",
    "test_levels",
    "rollback_plan",
    "impact",
    "likelihood",
    "touches_production_data",
    "customer_facing",
    "changes_security_control",
    "rollback_untested",
];

/// What a change made from `template` asks for beyond what CAB approved
/// when it approved the template, in words: services or environments the
/// template does not name, or a higher risk level than the template's.
/// Empty: the change is within the template's scope and is approved on
/// submission. Otherwise it is reviewed like any other change.
pub fn outside_scope(template: &ChangeContent, change: &ChangeContent) -> Vec<String> {
    let mut beyond = Vec::new();
    let services: Vec<&str> = change
        .services
        .iter()
        .filter(|s| !template.services.contains(s))
        .map(String::as_str)
        .collect();
    if !services.is_empty() {
        beyond.push(format!(
            "services the template does not cover: {}",
            services.join(", ")
        ));
    }
    let environments: Vec<&str> = change
        .environments
        .iter()
        .filter(|e| !template.environments.contains(e))
        .map(|e| e.label())
        .collect();
    if !environments.is_empty() {
        beyond.push(format!(
            "environments the template does not cover: {}",
            environments.join(", ")
        ));
    }
    let (approved, asked) = (assess(&template.risk).level, assess(&change.risk).level);
    if asked > approved {
        beyond.push(format!(
            "{} risk, above the template's {}",
            asked.as_str(),
            approved.as_str()
        ));
    }
    beyond
}

/// `content` with the template's fixed fields imposed, as a standard change.
pub fn apply_template(template: &ChangeContent, mut content: ChangeContent) -> ChangeContent {
    content.change_type = ChangeType::Standard;
    content.category = template.category;
    content.implementation_plan = template.implementation_plan.clone();
    content.test_plan = template.test_plan.clone();
    content.test_levels = template.test_levels;
    content.rollback_plan = template.rollback_plan.clone();
    let outside = content.risk.outside_usual_window;
    content.risk = template.risk;
    content.risk.outside_usual_window = outside || template.risk.outside_usual_window;
    content
}

#[cfg(test)]
#[allow(clippy::type_complexity)] // the test table reads best with its row type inline
mod tests {
    use super::*;
    use crate::RoleSet;
    use crate::change::tests_support::complete;

    fn actor(n: u128, roles: &[Role], service: bool) -> Actor {
        Actor {
            id: Uuid::from_u128(n),
            roles: roles.iter().copied().collect::<RoleSet>(),
            is_service: service,
        }
    }

    #[test]
    fn template_rules() {
        use TemplateAction::*;
        use TemplateState::*;
        let proposer = Some(Uuid::from_u128(1));
        let cases: Vec<(
            Actor,
            Option<TemplateState>,
            TemplateAction,
            Result<(), &str>,
        )> = vec![
            (actor(1, &[Role::CabMember], false), None, Propose, Ok(())),
            (actor(1, &[Role::Admin], false), None, Propose, Ok(())),
            (
                actor(1, &[Role::Engineer], false),
                None,
                Propose,
                Err("cab_or_admin_required"),
            ),
            (
                actor(1, &[Role::CabMember], true),
                None,
                Propose,
                Err("cab_or_admin_required"),
            ),
            (
                actor(1, &[Role::CabMember], false),
                Some(Proposed),
                Vote,
                Err("self_approval"),
            ),
            (
                actor(2, &[Role::CabMember], false),
                Some(Proposed),
                Vote,
                Ok(()),
            ),
            (
                actor(2, &[Role::Admin], false),
                Some(Proposed),
                Vote,
                Err("cab_member_required"),
            ),
            (
                actor(2, &[Role::CabMember], true),
                Some(Proposed),
                Vote,
                Err("service_account"),
            ),
            (
                actor(2, &[Role::CabMember], false),
                Some(Approved),
                Vote,
                Err("not_under_review"),
            ),
            (
                actor(2, &[Role::Admin], false),
                Some(Approved),
                Retire,
                Ok(()),
            ),
            (
                actor(2, &[Role::Admin], false),
                Some(Retired),
                Retire,
                Err("template_retired"),
            ),
            (
                actor(3, &[Role::Engineer], false),
                Some(Approved),
                Use,
                Ok(()),
            ),
            (
                actor(3, &[Role::Engineer], false),
                Some(Retired),
                Use,
                Err("template_retired"),
            ),
            (
                actor(3, &[Role::Engineer], false),
                Some(Proposed),
                Use,
                Err("template_not_approved"),
            ),
        ];
        for (a, state, action, expected) in cases {
            assert_eq!(
                check_template_action(&a, state, proposer, action).map_err(|d| d.code),
                expected,
                "{:?} {state:?} {action:?}",
                a.roles
            );
        }
    }

    #[test]
    fn templates_are_complete_and_low_risk() {
        let mut c = complete();
        c.risk.impact = 1;
        c.risk.likelihood = 1;
        assert!(validate_template("Rotate certificates", &c).is_empty());
        c.risk.impact = 3;
        c.risk.likelihood = 2;
        assert_eq!(
            validate_template("Rotate certificates", &c)[0].field,
            "impact"
        );
        let mut c = complete();
        c.risk.impact = 1;
        c.risk.likelihood = 1;
        c.rollback_plan.clear();
        assert_eq!(validate_template("x", &c)[0].field, "rollback_plan");
    }

    #[test]
    fn a_template_name_holds_no_control_or_disguising_character() {
        let mut c = complete();
        c.risk.impact = 1;
        c.risk.likelihood = 1;
        for (name, named) in [
            ("Rotate\0 certificates", "U+0000 NULL"),
            (
                "Rotate \u{202E}setacifitrec",
                "U+202E RIGHT-TO-LEFT OVERRIDE",
            ),
            (
                "Rotate\u{2066} certificates",
                "U+2066 LEFT-TO-RIGHT ISOLATE",
            ),
        ] {
            let errors = validate_template(name, &c);
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert_eq!(errors[0].field, "name");
            assert!(errors[0].message.contains(named), "{}", errors[0].message);
        }
    }

    #[test]
    fn a_template_imposes_its_fixed_fields() {
        let mut t = complete();
        t.implementation_plan = "The fixed plan.".into();
        let mut mine = complete();
        mine.implementation_plan = "My own plan.".into();
        mine.title = "My title".into();
        let applied = apply_template(&t, mine);
        assert_eq!(applied.implementation_plan, "The fixed plan.");
        assert_eq!(applied.title, "My title");
        assert_eq!(applied.change_type, ChangeType::Standard);
    }

    #[test]
    fn a_change_from_a_template_stays_within_its_scope() {
        use crate::change::Environment::{Dev, Prod, Stage};
        let mut template = complete();
        template.services = vec!["intranet".into(), "wiki".into()];
        template.environments = vec![Dev, Stage];
        template.risk.impact = 1;
        template.risk.likelihood = 1;
        let within = apply_template(&template, {
            let mut c = complete();
            c.services = vec!["wiki".into()];
            c.environments = vec![Stage];
            c
        });
        assert!(outside_scope(&template, &within).is_empty());

        let mut prod = within.clone();
        prod.environments = vec![Stage, Prod];
        assert_eq!(
            outside_scope(&template, &prod),
            vec!["environments the template does not cover: PROD".to_owned()]
        );
        let mut other = within.clone();
        other.services = vec!["wiki".into(), "payments-api".into()];
        assert_eq!(
            outside_scope(&template, &other),
            vec!["services the template does not cover: payments-api".to_owned()]
        );
        // A flag the change may set raises its risk above the template's.
        let mut late = within.clone();
        late.risk.outside_usual_window = true;
        assert_eq!(
            outside_scope(&template, &late),
            vec!["medium risk, above the template's low".to_owned()]
        );
        // A template naming nothing covers nothing.
        let mut empty = template.clone();
        empty.services.clear();
        empty.environments.clear();
        assert_eq!(outside_scope(&empty, &within).len(), 2);
        let errors = validate_template("Empty", &empty);
        assert!(errors.iter().any(|e| e.field == "services"));
        assert!(errors.iter().any(|e| e.field == "environments"));
    }

    #[test]
    fn template_states_read_as_words_and_parse_back() {
        for (state, code, label) in [
            (TemplateState::Proposed, "proposed", "Proposed"),
            (TemplateState::Approved, "approved", "Approved"),
            (TemplateState::Retired, "retired", "Retired"),
        ] {
            assert_eq!(state.as_str(), code);
            assert_eq!(state.label(), label);
            assert_eq!(TemplateState::parse(code), Some(state));
        }
        assert_eq!(TemplateState::parse("draft"), None);
    }

    #[test]
    fn a_template_names_each_missing_plan_and_its_name_limits() {
        for plan in ["implementation_plan", "test_plan", "rollback_plan"] {
            let mut c = complete();
            c.risk.impact = 1;
            c.risk.likelihood = 1;
            match plan {
                "implementation_plan" => c.implementation_plan.clear(),
                "test_plan" => c.test_plan.clear(),
                _ => c.rollback_plan.clear(),
            }
            let fields: Vec<&str> = validate_template("Name", &c)
                .iter()
                .map(|e| e.field)
                .collect();
            assert!(fields.contains(&plan), "{plan}: {fields:?}");
        }
        let mut c = complete();
        c.risk.impact = 1;
        c.risk.likelihood = 1;
        assert!(validate_template(&"n".repeat(200), &c).is_empty());
        let too_long: Vec<&str> = validate_template(&"n".repeat(201), &c)
            .iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(too_long, vec!["name"]);
        let blank: Vec<&str> = validate_template("  ", &c)
            .iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(blank, vec!["name"]);
        // Higher answers are refused, once, on the impact field...
        c.risk.impact = 3;
        c.risk.likelihood = 3;
        let high: Vec<&str> = validate_template("Name", &c)
            .iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(high, vec!["impact"]);
        // ...unless an answer is already out of range (its own error says so).
        c.risk.impact = 0;
        let fields: Vec<&str> = validate_template("Name", &c)
            .iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(fields, vec!["impact"]);
        c.risk.impact = 3;
        c.risk.likelihood = 0;
        let fields: Vec<&str> = validate_template("Name", &c)
            .iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(fields, vec!["likelihood"]);
        c.risk.impact = 0;
        c.risk.likelihood = 9;
        let fields: Vec<&str> = validate_template("Name", &c)
            .iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(fields, vec!["impact", "likelihood"]);
        // Other errors do not hide a risk too high for a template.
        c.risk.impact = 3;
        c.risk.likelihood = 3;
        c.services.clear();
        let fields: Vec<&str> = validate_template("Name", &c)
            .iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(fields, vec!["services", "impact"]);
    }

    #[test]
    fn a_change_keeps_its_own_late_window_flag_or_the_templates() {
        let mut template = complete();
        template.risk.outside_usual_window = false;
        let mut change = complete();
        change.risk.outside_usual_window = true;
        assert!(
            apply_template(&template, change.clone())
                .risk
                .outside_usual_window
        );
        change.risk.outside_usual_window = false;
        assert!(
            !apply_template(&template, change.clone())
                .risk
                .outside_usual_window
        );
        template.risk.outside_usual_window = true;
        assert!(apply_template(&template, change).risk.outside_usual_window);
    }
}
