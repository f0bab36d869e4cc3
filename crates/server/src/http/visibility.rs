//! Who may see whose OwnTracks data: the one rule, used by the Recorder API (`/api/0/*`), the
//! UI's API (`/api/owntracks/…`) and the live feed (`/ws/live`). A user sees their own devices
//! and those of the users who granted them friendship; an admin sees all. The friendships are
//! the server's current snapshot ([`crate::friends::Friends::snapshot`]), so callers pass the
//! one they read (the broker applies the same grants to MQTT through
//! `porchlight_domain::acl::may_receive`).

use porchlight_domain::Role;
use porchlight_domain::acl::Friendships;
use porchlight_store::{OwnTracksDevice, User};

use super::AppState;
use super::error::{ApiError, ApiResult};

/// The users whose data `viewer` may see (`None`: all).
pub fn visible_users(viewer: &User, friends: &Friendships) -> Option<Vec<i64>> {
    match viewer.role {
        Role::Admin => None,
        _ => {
            let mut users = vec![viewer.id];
            users.extend(friends.owners_for(viewer.id));
            Some(users)
        }
    }
}

/// Whether `viewer` may see the data of the user `owner`.
pub fn may_see(viewer: &User, owner: i64, friends: &Friendships) -> bool {
    viewer.role == Role::Admin || viewer.id == owner || friends.grants(owner, viewer.id)
}

/// The OwnTracks device `id` if `caller` may see it (with the current friendships); 404 when
/// it does not exist or is not theirs to see (the same answer, so existence does not leak).
pub async fn visible_device(
    state: &AppState,
    caller: &User,
    id: i64,
) -> ApiResult<OwnTracksDevice> {
    state
        .store
        .owntracks_devices(visible_users(caller, &state.friends.snapshot()))
        .await?
        .into_iter()
        .find(|d| d.id == id)
        .ok_or_else(|| ApiError::NotFound("No such device.".into()))
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use porchlight_domain::acl::Grant;

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
        let none = Friendships::default();
        let alice = user(1, Role::User);
        assert!(may_see(&alice, 1, &none));
        assert!(!may_see(&alice, 2, &none));
        assert_eq!(visible_users(&alice, &none), Some(vec![1]));
        let admin = user(3, Role::Admin);
        assert!(may_see(&admin, 1, &none) && may_see(&admin, 2, &none));
        assert_eq!(visible_users(&admin, &none), None);
    }

    #[test]
    fn a_user_also_sees_those_who_granted_them_and_only_them() {
        // u2 granted u1; u3 granted nobody.
        let friends = Friendships::new([Grant {
            owner_id: 2,
            owner: "u2".into(),
            viewer_id: 1,
        }]);
        let alice = user(1, Role::User);
        assert!(may_see(&alice, 2, &friends));
        assert!(!may_see(&alice, 3, &friends));
        assert_eq!(visible_users(&alice, &friends), Some(vec![1, 2]));
        let bob = user(2, Role::User);
        assert!(!may_see(&bob, 1, &friends), "friendship is one-way");
    }
}
