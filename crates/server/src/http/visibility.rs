//! Who may see whose OwnTracks data: the one rule, used by the Recorder API, the UI's API and
//! the live feed. Today a user sees their own devices and an admin sees all; friendship (a
//! user granting another the sight of their devices) is to be added here.

use porchlight_domain::Role;
use porchlight_store::User;

/// The users whose data `viewer` may see (`None`: all).
pub fn visible_users(viewer: &User) -> Option<Vec<i64>> {
    match viewer.role {
        Role::Admin => None,
        _ => Some(vec![viewer.id]),
    }
}

/// Whether `viewer` may see the data of the user `owner`.
pub fn may_see(viewer: &User, owner: i64) -> bool {
    visible_users(viewer).is_none_or(|users| users.contains(&owner))
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    fn user(id: i64, role: Role) -> User {
        User {
            id,
            username: format!("u{id}"),
            role,
            created_at: UNIX_EPOCH,
        }
    }

    #[test]
    fn a_user_sees_their_own_and_an_admin_sees_everyone() {
        let alice = user(1, Role::User);
        assert!(may_see(&alice, 1));
        assert!(!may_see(&alice, 2));
        assert_eq!(visible_users(&alice), Some(vec![1]));
        let admin = user(3, Role::Admin);
        assert!(may_see(&admin, 1) && may_see(&admin, 2));
        assert_eq!(visible_users(&admin), None);
    }
}
