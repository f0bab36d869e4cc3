//! A new friendship shows at once on the viewer's existing subscriptions: when the app grants
//! alice the sight of bob's devices, each of alice's sessions is sent bob's retained messages
//! (his phones' last location and card, as OwnTracks apps publish them retained) that its
//! subscriptions match and [`acl::may_receive`] allows, as rmqtt sends retained messages on
//! SUBSCRIBE. Without this, alice's phone would show bob only after his next publish.
//! Revokes need nothing here: every delivery is checked (see `hooks.rs`).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use porchlight_domain::acl::{self, Friendships};
use rmqtt::context::ServerContext;
use rmqtt::types::TopicFilter;
use tokio::sync::watch;

use crate::hooks::{State, session_identity};

/// Follows the app's friendships until their sender is gone (or the task is aborted).
pub(crate) async fn follow(
    scx: ServerContext,
    state: Arc<State>,
    mut friendships: watch::Receiver<Arc<Friendships>>,
) {
    let mut previous = Arc::clone(&friendships.borrow_and_update());
    while friendships.changed().await.is_ok() {
        let current = Arc::clone(&friendships.borrow_and_update());
        for (owner, viewer_id) in current.added_since(&previous) {
            let sent = show_retained(&scx, &state, &owner, viewer_id, &current).await;
            if sent > 0 {
                tracing::debug!(%owner, viewer_id, sent, "retained messages sent to a new friend");
            }
        }
        previous = current;
    }
}

/// Sends `owner`'s retained OwnTracks messages to the sessions of `viewer_id`; returns how
/// many were handed to rmqtt.
async fn show_retained(
    scx: &ServerContext,
    state: &State,
    owner: &str,
    viewer_id: i64,
    friends: &Friendships,
) -> usize {
    let sessions = state.live_matching(|i| i.user_id == viewer_id);
    if sessions.is_empty() {
        return 0;
    }
    let filter = TopicFilter::from(format!("owntracks/{owner}/#"));
    let retained = match scx.extends.retain().await.get(&filter).await {
        Ok(retained) => retained,
        Err(e) => {
            tracing::warn!(%owner, error = %e, "retained messages not read for a new friend");
            return 0;
        }
    };
    let mut sent = 0;
    for id in sessions {
        let session = scx
            .extends
            .shared()
            .await
            .entry(id.clone())
            .session()
            .filter(|s| s.id == id);
        let Some(session) = session else { continue };
        let Some(identity) = session_identity(&session).await else {
            continue;
        };
        let Ok(subscriptions) = session.subscriptions().await else {
            continue;
        };
        let filters: Vec<(String, rmqtt::codec::types::QoS)> = subscriptions
            .read()
            .await
            .iter()
            .map(|(filter, opts)| (filter.to_string(), opts.qos()))
            .collect();
        for (topic, retain) in &retained {
            if !acl::may_receive(&identity, topic, friends) {
                continue;
            }
            // The highest QoS among the matching subscriptions, as rmqtt grants it.
            let Some(qos) = filters
                .iter()
                .filter(|(filter, _)| acl::filter_matches(filter, topic))
                .map(|(_, qos)| *qos)
                .max_by_key(|qos| qos.value())
            else {
                continue;
            };
            let mut publish = retain.publish.clone();
            publish.dup = false;
            publish.retain = true;
            publish.qos = publish.qos.less_value(qos);
            publish.topic = topic.clone();
            publish.packet_id = None;
            publish.create_time = Some(now_millis());
            let delivered = scx
                .extends
                .shared()
                .await
                .entry(id.clone())
                .publish(retain.from.clone(), publish)
                .await;
            match delivered {
                Ok(()) => sent += 1,
                Err((_, _, reason)) => {
                    tracing::debug!(client_id = %id.client_id, %topic, %reason, "retained message not sent to a new friend");
                }
            }
        }
    }
    sent
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
