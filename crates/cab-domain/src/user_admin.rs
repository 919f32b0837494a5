//! Who may manage users, and the changes nobody may make even as an admin.
//!
//! Two-person rule: a role that decides on changes (security reviewer, CAB
//! member, release manager), and the administrator role itself, is granted
//! through the app only when a second administrator confirms what the first
//! requested. One administrator alone could otherwise create accounts with
//! passwords of their choosing, make them CAB members and so manufacture a
//! quorum. The administrator role is guarded too: an administrator who could
//! make a second administrator alone could confirm their own requests through
//! that account.

use uuid::Uuid;

use crate::{Actor, Denial, Role, RoleSet};

/// The facts about a user account a rule needs.
#[derive(Debug, Clone)]
pub struct Account {
    pub id: Uuid,
    pub roles: RoleSet,
    pub active: bool,
    pub is_service: bool,
}

pub fn require_admin(actor: &Actor) -> Result<(), Denial> {
    if actor.roles.contains(Role::Admin) {
        Ok(())
    } else {
        Err(Denial::new(
            "admin_required",
            "Only an administrator can manage users and service accounts.",
        ))
    }
}

/// Roles a new or existing account may be given at all.
pub fn check_role_assignment(is_service: bool, roles: &RoleSet) -> Result<(), Denial> {
    if is_service && roles.contains(Role::Admin) {
        return Err(Denial::new(
            "service_account_admin",
            "A service account cannot be an administrator: pipelines must not manage users.",
        ));
    }
    Ok(())
}

/// `active_admins` counts active, human accounts holding the admin role.
pub fn check_set_roles(
    actor: &Actor,
    target: &Account,
    new_roles: &RoleSet,
    active_admins: usize,
) -> Result<(), Denial> {
    require_admin(actor)?;
    if actor.id == target.id {
        return Err(Denial::new(
            "own_roles",
            "You cannot change your own roles; another administrator has to do it.",
        ));
    }
    check_role_assignment(target.is_service, new_roles)?;
    if target.active
        && target.roles.contains(Role::Admin)
        && !new_roles.contains(Role::Admin)
        && active_admins <= 1
    {
        return Err(Denial::new(
            "last_admin",
            "This is the last active administrator; make someone else an administrator first.",
        ));
    }
    Ok(())
}

pub fn check_disable(actor: &Actor, target: &Account, active_admins: usize) -> Result<(), Denial> {
    require_admin(actor)?;
    if !target.active {
        return Err(Denial::new(
            "already_disabled",
            "This account is already disabled.",
        ));
    }
    if actor.id == target.id {
        return Err(Denial::new(
            "disable_self",
            "You cannot disable your own account; another administrator has to do it.",
        ));
    }
    if target.roles.contains(Role::Admin) && active_admins <= 1 {
        return Err(Denial::new(
            "last_admin",
            "This is the last active administrator; make someone else an administrator first.",
        ));
    }
    Ok(())
}

/// API tokens are for service accounts only: people sign in with a password.
pub fn check_issue_token(actor: &Actor, target: &Account) -> Result<(), Denial> {
    require_admin(actor)?;
    if !target.is_service {
        return Err(Denial::new(
            "not_a_service_account",
            "API tokens are issued to service accounts only; people sign in with their password.",
        ));
    }
    if !target.active {
        return Err(Denial::new(
            "account_disabled",
            "This service account is disabled.",
        ));
    }
    Ok(())
}

/// The roles that decide on or act on changes: assessing them, voting on
/// them, deploying them.
pub const DECISION_ROLES: [Role; 3] = [
    Role::SecurityReviewer,
    Role::CabMember,
    Role::ReleaseManager,
];

pub fn is_decision_role(role: Role) -> bool {
    DECISION_ROLES.contains(&role)
}

/// Whether granting `role` through the app takes a second administrator:
/// the decision roles, and the administrator role (whoever holds it can
/// confirm grants). Every other role, and taking any role away, applies at
/// once: it gives nobody a say in a decision.
pub fn grant_needs_second_admin(role: Role) -> bool {
    is_decision_role(role) || role == Role::Admin
}

/// A requested role change, split into what applies at once and what waits
/// for a second administrator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleChangePlan {
    /// The roles the account holds from now on: the new roles without the
    /// guarded ones it does not hold yet.
    pub now: RoleSet,
    /// The guarded roles the change adds, which wait for confirmation
    /// (empty when nothing waits).
    pub awaiting: RoleSet,
}

pub fn plan_role_change(old: &RoleSet, new: &RoleSet) -> RoleChangePlan {
    let awaiting: RoleSet = new
        .iter()
        .filter(|r| !old.contains(*r) && grant_needs_second_admin(*r))
        .collect();
    let now = new.iter().filter(|r| !awaiting.contains(*r)).collect();
    RoleChangePlan { now, awaiting }
}

/// Where a request for roles stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantState {
    Pending,
    Confirmed,
    Cancelled,
}

/// The facts about a role request a rule needs.
#[derive(Debug, Clone)]
pub struct RoleGrant {
    pub requested_by: Uuid,
    pub roles: RoleSet,
    pub state: GrantState,
}

fn check_pending(grant: &RoleGrant) -> Result<(), Denial> {
    match grant.state {
        GrantState::Pending => Ok(()),
        GrantState::Confirmed => Err(Denial::new(
            "grant_closed",
            "This role request has already been confirmed.",
        )),
        GrantState::Cancelled => Err(Denial::new(
            "grant_closed",
            "This role request was cancelled; ask for the roles again if they are still needed.",
        )),
    }
}

/// A second administrator confirms a role request: an administrator other
/// than the one who asked, for somebody other than themselves, while the
/// account is active and the request still open.
pub fn check_confirm_grant(
    actor: &Actor,
    grant: &RoleGrant,
    target: &Account,
) -> Result<(), Denial> {
    require_admin(actor)?;
    check_pending(grant)?;
    if actor.id == grant.requested_by {
        return Err(Denial::new(
            "self_confirmation",
            "You asked for these roles yourself; a second administrator has to confirm them.",
        ));
    }
    if actor.id == target.id {
        return Err(Denial::new(
            "own_roles",
            "You cannot confirm roles for yourself; another administrator has to do it.",
        ));
    }
    if !target.active {
        return Err(Denial::new(
            "account_disabled",
            "This account is disabled; its roles can no longer be changed.",
        ));
    }
    check_role_assignment(target.is_service, &grant.roles)
}

/// Role requests are read by administrators (who settle them) and auditors
/// (who check that nobody settled their own).
pub fn check_read_grants(actor: &Actor) -> Result<(), Denial> {
    if actor.roles.contains(Role::Admin) || actor.roles.contains(Role::Auditor) {
        Ok(())
    } else {
        Err(Denial::new(
            "admin_or_auditor_required",
            "Only administrators and auditors can see requests for roles.",
        ))
    }
}

/// Any administrator may withdraw an open request, the requester included:
/// cancelling gives nobody any power.
pub fn check_cancel_grant(actor: &Actor, grant: &RoleGrant) -> Result<(), Denial> {
    require_admin(actor)?;
    check_pending(grant)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_service_account_is_refused_the_admin_role() {
        let admin: RoleSet = [Role::Admin].into_iter().collect();
        let engineer: RoleSet = [Role::Engineer].into_iter().collect();
        assert!(check_role_assignment(false, &admin).is_ok());
        assert!(check_role_assignment(true, &engineer).is_ok());
        assert_eq!(
            check_role_assignment(true, &admin).map_err(|d| d.code),
            Err("service_account_admin")
        );
    }

    fn roles(r: &[Role]) -> RoleSet {
        r.iter().copied().collect()
    }

    fn admin() -> Actor {
        Actor {
            id: Uuid::from_u128(1),
            roles: roles(&[Role::Admin]),
            is_service: false,
        }
    }

    fn account(id: u128, r: &[Role]) -> Account {
        Account {
            id: Uuid::from_u128(id),
            roles: roles(r),
            active: true,
            is_service: false,
        }
    }

    #[test]
    fn every_non_admin_role_is_refused() {
        for role in Role::ALL.into_iter().filter(|r| *r != Role::Admin) {
            let actor = Actor {
                id: Uuid::from_u128(9),
                roles: roles(&[role]),
                is_service: false,
            };
            assert_eq!(require_admin(&actor).unwrap_err().code, "admin_required");
            let target = account(2, &[Role::Engineer]);
            assert_eq!(
                check_set_roles(&actor, &target, &roles(&[Role::Auditor]), 2)
                    .unwrap_err()
                    .code,
                "admin_required"
            );
            assert_eq!(
                check_disable(&actor, &target, 2).unwrap_err().code,
                "admin_required"
            );
        }
    }

    #[test]
    fn admin_cannot_change_own_roles_even_to_add_one() {
        let me = account(1, &[Role::Admin]);
        let err =
            check_set_roles(&admin(), &me, &roles(&[Role::Admin, Role::CabMember]), 3).unwrap_err();
        assert_eq!(err.code, "own_roles");
    }

    #[test]
    fn last_admin_cannot_be_demoted_or_disabled() {
        let other = account(2, &[Role::Admin]);
        let err = check_set_roles(&admin(), &other, &roles(&[Role::Engineer]), 1).unwrap_err();
        assert_eq!(err.code, "last_admin");
        assert_eq!(
            check_disable(&admin(), &other, 1).unwrap_err().code,
            "last_admin"
        );
        assert!(check_set_roles(&admin(), &other, &roles(&[Role::Engineer]), 2).is_ok());
        assert!(check_disable(&admin(), &other, 2).is_ok());
    }

    #[test]
    fn admin_cannot_disable_self() {
        let me = account(1, &[Role::Admin]);
        assert_eq!(
            check_disable(&admin(), &me, 5).unwrap_err().code,
            "disable_self"
        );
    }

    #[test]
    fn service_accounts_never_hold_admin_and_alone_get_tokens() {
        let mut svc = account(3, &[Role::ReleaseManager]);
        svc.is_service = true;
        assert_eq!(
            check_set_roles(&admin(), &svc, &roles(&[Role::Admin]), 2)
                .unwrap_err()
                .code,
            "service_account_admin"
        );
        assert!(check_issue_token(&admin(), &svc).is_ok());
        let human = account(4, &[Role::Engineer]);
        assert_eq!(
            check_issue_token(&admin(), &human).unwrap_err().code,
            "not_a_service_account"
        );
    }

    #[test]
    fn only_adding_a_decision_role_or_admin_waits_for_a_second_admin() {
        use Role::*;
        // (held, requested, applies at once, waits)
        type Case = (
            &'static [Role],
            &'static [Role],
            &'static [Role],
            &'static [Role],
        );
        let cases: [Case; 10] = [
            (
                &[Engineer],
                &[Engineer, CabMember],
                &[Engineer],
                &[CabMember],
            ),
            (&[], &[SecurityReviewer], &[], &[SecurityReviewer]),
            (
                &[Engineer],
                &[ReleaseManager, Auditor],
                &[Auditor],
                &[ReleaseManager],
            ),
            (&[Engineer], &[Admin], &[], &[Admin]),
            (
                &[CabMember],
                &[CabMember, Auditor],
                &[CabMember, Auditor],
                &[],
            ),
            (&[CabMember, Engineer], &[Engineer], &[Engineer], &[]),
            (&[Admin, CabMember], &[], &[], &[]),
            (&[], &[Engineer, Auditor], &[Engineer, Auditor], &[]),
            (&[CabMember], &[ReleaseManager], &[], &[ReleaseManager]),
            (
                &[Engineer],
                &[SecurityReviewer, CabMember, ReleaseManager, Admin],
                &[],
                &[SecurityReviewer, CabMember, ReleaseManager, Admin],
            ),
        ];
        for (held, requested, now, awaiting) in cases {
            let plan = plan_role_change(&roles(held), &roles(requested));
            assert_eq!(plan.now, roles(now), "{held:?} -> {requested:?}");
            assert_eq!(plan.awaiting, roles(awaiting), "{held:?} -> {requested:?}");
        }
        for role in Role::ALL {
            assert_eq!(
                grant_needs_second_admin(role),
                !matches!(role, Engineer | Auditor),
                "{role}"
            );
        }
    }

    fn grant(by: u128, r: &[Role], state: GrantState) -> RoleGrant {
        RoleGrant {
            requested_by: Uuid::from_u128(by),
            roles: roles(r),
            state,
        }
    }

    fn admin_id(id: u128) -> Actor {
        Actor {
            id: Uuid::from_u128(id),
            roles: roles(&[Role::Admin]),
            is_service: false,
        }
    }

    #[test]
    fn a_grant_is_confirmed_by_a_second_admin_only() {
        let target = account(5, &[Role::Engineer]);
        let pending = grant(1, &[Role::CabMember], GrantState::Pending);
        assert!(check_confirm_grant(&admin_id(2), &pending, &target).is_ok());
        let mut disabled = target.clone();
        disabled.active = false;
        let mut svc = target.clone();
        svc.is_service = true;
        let cab = Actor {
            id: Uuid::from_u128(3),
            roles: roles(&[Role::CabMember, Role::ReleaseManager]),
            is_service: false,
        };
        let for_admin_two = grant(1, &[Role::CabMember], GrantState::Pending);
        let cases: [(Actor, RoleGrant, Account, &str); 7] = [
            (
                admin(),
                pending.clone(),
                target.clone(),
                "self_confirmation",
            ),
            (cab, pending.clone(), target.clone(), "admin_required"),
            (
                admin_id(2),
                for_admin_two,
                account(2, &[Role::Admin]),
                "own_roles",
            ),
            (
                admin_id(2),
                grant(1, &[Role::CabMember], GrantState::Cancelled),
                target.clone(),
                "grant_closed",
            ),
            (
                admin_id(2),
                grant(1, &[Role::CabMember], GrantState::Confirmed),
                target.clone(),
                "grant_closed",
            ),
            (admin_id(2), pending.clone(), disabled, "account_disabled"),
            (
                admin_id(2),
                grant(1, &[Role::Admin], GrantState::Pending),
                svc,
                "service_account_admin",
            ),
        ];
        for (actor, grant, target, code) in cases {
            assert_eq!(
                check_confirm_grant(&actor, &grant, &target)
                    .unwrap_err()
                    .code,
                code
            );
        }
    }

    #[test]
    fn any_admin_may_withdraw_an_open_request_and_nobody_else() {
        let pending = grant(1, &[Role::CabMember], GrantState::Pending);
        assert!(check_cancel_grant(&admin(), &pending).is_ok());
        assert!(check_cancel_grant(&admin_id(2), &pending).is_ok());
        let auditor = Actor {
            id: Uuid::from_u128(3),
            roles: roles(&[Role::Auditor]),
            is_service: false,
        };
        assert_eq!(
            check_cancel_grant(&auditor, &pending).unwrap_err().code,
            "admin_required"
        );
        let done = grant(1, &[Role::CabMember], GrantState::Confirmed);
        assert_eq!(
            check_cancel_grant(&admin_id(2), &done).unwrap_err().code,
            "grant_closed"
        );
    }

    #[test]
    fn only_admins_and_auditors_read_role_requests() {
        for role in Role::ALL {
            let actor = Actor {
                id: Uuid::from_u128(4),
                roles: roles(&[role]),
                is_service: false,
            };
            let allowed = matches!(role, Role::Admin | Role::Auditor);
            match check_read_grants(&actor) {
                Ok(()) => assert!(allowed, "{role}"),
                Err(d) => {
                    assert!(!allowed, "{role}");
                    assert_eq!(d.code, "admin_or_auditor_required");
                }
            }
        }
    }
}
