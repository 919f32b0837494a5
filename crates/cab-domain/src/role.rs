//! Roles a user may hold. A user holds any set of them; none implies another.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Engineer,
    SecurityReviewer,
    CabMember,
    ReleaseManager,
    Auditor,
    /// Manages users and settings. Grants no approval or deployment power.
    Admin,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Engineer,
        Role::SecurityReviewer,
        Role::CabMember,
        Role::ReleaseManager,
        Role::Auditor,
        Role::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Engineer => "engineer",
            Role::SecurityReviewer => "security_reviewer",
            Role::CabMember => "cab_member",
            Role::ReleaseManager => "release_manager",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Role::Engineer => "Engineer",
            Role::SecurityReviewer => "Security reviewer",
            Role::CabMember => "CAB member",
            Role::ReleaseManager => "Release manager",
            Role::Auditor => "Auditor",
            Role::Admin => "Administrator",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The role name was not one of [`Role::ALL`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownRole(pub String);

impl fmt::Display for UnknownRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let known: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
        write!(
            f,
            "unknown role {}; known roles are {}",
            crate::text::quoted(&self.0),
            known.join(", ")
        )
    }
}

impl std::error::Error for UnknownRole {}

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s.trim())
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

/// A set of roles, ordered so that it prints and stores the same way every time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RoleSet(BTreeSet<Role>);

impl RoleSet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn contains(&self, role: Role) -> bool {
        self.0.contains(&role)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = Role> + '_ {
        self.0.iter().copied()
    }

    /// Whether these roles let their holder change anything: every role
    /// does but the auditor's, who reads everything and changes nothing.
    pub fn may_act(&self) -> bool {
        self.iter().any(|r| r != Role::Auditor)
    }

    pub fn insert(&mut self, role: Role) {
        self.0.insert(role);
    }

    /// Role names in a stable order, as stored in the database.
    pub fn names(&self) -> Vec<String> {
        self.0.iter().map(|r| r.as_str().to_owned()).collect()
    }

    /// Parses stored or submitted role names; any unknown name is an error.
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Result<Self, UnknownRole> {
        names
            .iter()
            .map(|n| n.as_ref().parse::<Role>())
            .collect::<Result<BTreeSet<_>, _>>()
            .map(RoleSet)
    }
}

impl FromIterator<Role> for RoleSet {
    fn from_iter<T: IntoIterator<Item = Role>>(iter: T) -> Self {
        RoleSet(iter.into_iter().collect())
    }
}

impl fmt::Display for RoleSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(no roles)");
        }
        f.write_str(&self.names().join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_sets_grow_and_read_as_names() {
        let mut set = RoleSet::default();
        assert!(set.is_empty());
        assert_eq!(set.to_string(), "(no roles)");
        set.insert(Role::CabMember);
        set.insert(Role::Engineer);
        assert!(!set.is_empty());
        assert!(set.contains(Role::CabMember));
        assert_eq!(set.to_string(), "engineer, cab_member");
        assert_eq!(Role::SecurityReviewer.to_string(), "security_reviewer");
    }

    #[test]
    fn every_role_but_the_auditor_s_may_act() {
        for role in Role::ALL {
            let alone: RoleSet = [role].into_iter().collect();
            assert_eq!(alone.may_act(), role != Role::Auditor, "{role:?}");
            let with_auditor: RoleSet = [role, Role::Auditor].into_iter().collect();
            assert_eq!(with_auditor.may_act(), role != Role::Auditor, "{role:?}");
        }
        assert!(!RoleSet::new().may_act());
    }

    #[test]
    fn every_role_has_its_own_label() {
        let labels: Vec<&str> = Role::ALL.iter().map(|r| r.label()).collect();
        assert!(
            labels
                .iter()
                .all(|l| !l.is_empty() && l.chars().next().is_some_and(char::is_uppercase))
        );
        let mut unique = labels.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), labels.len());
        assert_eq!(Role::CabMember.label(), "CAB member");
    }

    #[test]
    fn every_role_round_trips_through_its_name() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
    }

    #[test]
    fn unknown_role_names_the_known_ones() {
        let err = "root".parse::<Role>().unwrap_err();
        assert!(err.to_string().contains("cab_member"), "{err}");
    }

    #[test]
    fn role_sets_are_ordered_and_deduplicated() {
        let set = RoleSet::parse(&["admin", "engineer", "admin"]).unwrap();
        assert_eq!(set.names(), vec!["engineer", "admin"]);
        assert!(RoleSet::parse(&["engineer", "nobody"]).is_err());
    }
}

/// Who is acting, for every rule: their id, their roles, and whether they
/// are a pipeline's service account.
#[derive(Debug, Clone)]
pub struct Actor {
    pub id: uuid::Uuid,
    pub roles: RoleSet,
    pub is_service: bool,
}
