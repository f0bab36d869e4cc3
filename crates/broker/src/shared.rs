//! MQTT 5 shared subscriptions (`$share/<group>/<filter>`): each message matching a group's
//! filter goes to exactly one member of the group.
//!
//! rmqtt routes shared subscriptions only when a [`SharedSubscription`] says it supports them;
//! its default says no, which left `$share/…` filters as literal ones (subscribers got
//! nothing). Ours takes turns: among the members whose session is connected, the next one
//! in line (one counter per broker: fair enough for a household's handful of consumers);
//! when none is connected, the first member, whose persistent session queues the message.
//! Who may subscribe to a group is the subscribe ACL's decision (`hooks.rs`: admins only).

use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use rmqtt::context::ServerContext;
use rmqtt::subscribe::SharedSubscription;
use rmqtt::types::{
    ClientId, Id, IsOnline, NodeId, SharedGroup, SubscriptionIdentifier, SubscriptionOptions,
    TopicName,
};

#[derive(Default)]
pub(crate) struct TakeTurns {
    next: AtomicUsize,
}

type Member = (
    NodeId,
    ClientId,
    SubscriptionOptions,
    Option<Vec<SubscriptionIdentifier>>,
    Option<IsOnline>,
);

#[async_trait]
impl SharedSubscription for TakeTurns {
    fn is_supported(&self) -> bool {
        true
    }

    async fn choice(
        &self,
        _scx: &ServerContext,
        _group: &SharedGroup,
        _publisher: &Id,
        _topic: &TopicName,
        members: &[Member],
    ) -> Option<(usize, IsOnline)> {
        let online: Vec<usize> = members
            .iter()
            .enumerate()
            .filter(|(_, m)| m.4 != Some(false))
            .map(|(i, _)| i)
            .collect();
        if online.is_empty() {
            return (!members.is_empty()).then_some((0, false));
        }
        let turn = self.next.fetch_add(1, Ordering::Relaxed) % online.len();
        Some((online[turn], true))
    }
}
