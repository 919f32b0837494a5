//! Who may manage users, and the changes nobody may make even as an admin.

use uuid::Uuid;

use crate::{Denial, Role, RoleSet};

/// The facts about a user account a rule needs.
#[derive(Debug, Clone)]
pub struct Account {
    pub id: Uuid,
    pub roles: RoleSet,
    pub active: bool,
    pub is_service: bool,
}

/// The person (or pipeline) asking.
#[derive(Debug, Clone)]
pub struct Actor {
    pub id: Uuid,
    pub roles: RoleSet,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn roles(r: &[Role]) -> RoleSet {
        r.iter().copied().collect()
    }

    fn admin() -> Actor {
        Actor {
            id: Uuid::from_u128(1),
            roles: roles(&[Role::Admin]),
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
}
