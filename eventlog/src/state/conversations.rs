//! Conversations: direct and group conversations and their members.

use std::collections::BTreeMap;

use crate::command::{Command, Invalid, Rejection, Reply};
use crate::event::{ConvKind, Event, MessageId};

use super::model::{Conversation, Member, User};
use super::{pair, Decision, State};

impl State {
    /// A pair has one direct conversation: asking again returns it. A user
    /// blocked by the other gets neither a new one nor the existing one.
    pub(super) fn decide_direct(&self, command: &Command) -> Result<Decision, Rejection> {
        let Command::CreateDirect { by, other, at } = command else {
            unreachable!("State::decide dispatches only Command::CreateDirect here")
        };
        self.existing_user(*by)?;
        let other_user = self.existing_user(*other)?;
        if self.blocks(*other, *by) {
            return Err(Rejection::Blocked);
        }
        if let Some(conv_id) = self.direct_between(*by, *other) {
            return Ok(Decision::none(Reply::Conversation {
                conv_id,
                created: false,
            }));
        }
        let by_user = self.existing_user(*by)?;
        let conv_id = self.next_conv_id + 1;
        let mut members = vec![(*by, true)];
        if other != by {
            members.push((*other, false));
        }
        Ok(Decision::one(
            Event::ConversationCreated {
                conv_id,
                kind: ConvKind::Direct,
                title: format!("{} - {}", by_user.username, other_user.username),
                owner: *by,
                description: String::new(),
                is_public: false,
                members,
                at: *at,
            },
            Reply::Conversation {
                conv_id,
                created: true,
            },
        ))
    }

    /// The creator is the admin; repeated member ids count once. Every
    /// member must accept group invitations, or nothing is created.
    pub(super) fn decide_group(&self, command: &Command) -> Result<Decision, Rejection> {
        let Command::CreateGroup {
            by,
            title,
            description,
            is_public,
            member_ids,
            at,
        } = command
        else {
            unreachable!("State::decide dispatches only Command::CreateGroup here")
        };
        self.existing_user(*by)?;
        let mut members = vec![(*by, true)];
        for id in member_ids {
            let user = self.existing_user(*id)?;
            if id != by {
                consents_to_invite(user)?;
            }
            if !members.iter().any(|(m, _)| m == id) {
                members.push((*id, false));
            }
        }
        let conv_id = self.next_conv_id + 1;
        Ok(Decision::one(
            Event::ConversationCreated {
                conv_id,
                kind: ConvKind::Group,
                title: title.clone(),
                owner: *by,
                description: description.clone(),
                is_public: *is_public,
                members,
                at: *at,
            },
            Reply::Conversation {
                conv_id,
                created: true,
            },
        ))
    }

    pub(super) fn apply_conversation_created(&mut self, event: &Event) {
        let Event::ConversationCreated {
            conv_id,
            kind,
            title,
            owner,
            description,
            is_public,
            members,
            at,
        } = event
        else {
            unreachable!("State::apply dispatches only Event::ConversationCreated here")
        };
        self.next_conv_id = self.next_conv_id.max(*conv_id);
        let mut conv = Conversation {
            id: *conv_id,
            kind: *kind,
            title: title.clone(),
            owner: *owner,
            description: description.clone(),
            is_public: *is_public,
            created_at: *at,
            updated_at: *at,
            members: BTreeMap::new(),
            last_seq: 0,
            last_message: None,
            pins: Vec::new(),
        };
        for (user_id, is_admin) in members {
            self.next_member_id += 1;
            conv.members.insert(
                *user_id,
                Member {
                    is_admin: *is_admin,
                    joined_at: *at,
                    id: self.next_member_id,
                },
            );
            self.user_conversations
                .entry(*user_id)
                .or_default()
                .insert(*conv_id);
            // A counter for every membership, so that counting and
            // rebuilding give the same map.
            self.unread.insert((*conv_id, *user_id), 0);
        }
        if *kind == ConvKind::Direct {
            let other = members.get(1).map_or(*owner, |(u, _)| *u);
            self.directs.insert(pair(*owner, other), *conv_id);
        }
        self.conversations.insert(*conv_id, conv);
    }

    pub(super) fn decide_add_member(&self, command: &Command) -> Result<Decision, Rejection> {
        let Command::AddMember {
            by,
            conv_id,
            user_id,
            at,
        } = command
        else {
            unreachable!("State::decide dispatches only Command::AddMember here")
        };
        let conv = self.member_conversation(*conv_id, *by)?;
        if conv.kind == ConvKind::Direct {
            return Err(Rejection::Invalid(Invalid::DirectMembersFixed));
        }
        if !conv.members.get(by).is_some_and(|m| m.is_admin) {
            return Err(Rejection::NotAnAdmin);
        }
        let user = self.existing_user(*user_id)?;
        if conv.members.contains_key(user_id) {
            return Err(Rejection::AlreadyMember);
        }
        consents_to_invite(user)?;
        Ok(Decision::one(
            Event::MemberAdded {
                conv_id: *conv_id,
                seq: conv.last_seq + 1,
                user_id: *user_id,
                is_admin: false,
                by: *by,
                at: *at,
            },
            Reply::Done,
        ))
    }

    pub(super) fn apply_member_added(&mut self, event: &Event) {
        let Event::MemberAdded {
            conv_id,
            user_id,
            is_admin,
            at,
            ..
        } = event
        else {
            unreachable!("State::apply dispatches only Event::MemberAdded here")
        };
        if let Some(conv) = self.conversations.get_mut(conv_id) {
            self.next_member_id += 1;
            conv.members.insert(
                *user_id,
                Member {
                    is_admin: *is_admin,
                    joined_at: *at,
                    id: self.next_member_id,
                },
            );
            conv.updated_at = *at;
            self.user_conversations
                .entry(*user_id)
                .or_default()
                .insert(*conv_id);
        }
        // A new member finds the history after their read position (all of
        // it, unless they were a member before) unread.
        if let Some(conv) = self.conversations.get(conv_id) {
            let unread = self.unread_recount(conv, *user_id);
            self.unread.insert((*conv_id, *user_id), unread);
        }
    }

    /// Anyone may leave; only admins may remove someone else. When the
    /// last admin leaves a group that keeps members, its longest-standing
    /// member (earliest `joined_at`, then the older membership) becomes
    /// an admin in the same decision.
    pub(super) fn decide_remove_member(&self, command: &Command) -> Result<Decision, Rejection> {
        let Command::RemoveMember {
            by,
            conv_id,
            user_id,
            at,
        } = command
        else {
            unreachable!("State::decide dispatches only Command::RemoveMember here")
        };
        let conv = self.member_conversation(*conv_id, *by)?;
        if conv.kind == ConvKind::Direct {
            return Err(Rejection::Invalid(Invalid::DirectMembersFixed));
        }
        if by != user_id && !conv.is_admin(*by) {
            return Err(Rejection::NotAnAdmin);
        }
        if !conv.members.contains_key(user_id) {
            return Err(Rejection::Invalid(Invalid::NotAMemberToRemove));
        }
        let mut events = vec![Event::MemberRemoved {
            conv_id: *conv_id,
            seq: conv.last_seq + 1,
            user_id: *user_id,
            by: *by,
            at: *at,
        }];
        let admin_left = conv
            .members
            .iter()
            .any(|(id, m)| id != user_id && m.is_admin);
        if conv.is_admin(*user_id) && !admin_left {
            let successor = conv
                .members
                .iter()
                .filter(|(id, _)| *id != user_id)
                .min_by_key(|(_, m)| (m.joined_at, m.id))
                .map(|(id, _)| *id);
            if let Some(successor) = successor {
                events.push(Event::MemberPromoted {
                    conv_id: *conv_id,
                    seq: conv.last_seq + 2,
                    user_id: successor,
                    at: *at,
                });
            }
        }
        Ok(Decision {
            events,
            reply: Reply::Done,
        })
    }

    pub(super) fn apply_member_removed(&mut self, event: &Event) {
        let Event::MemberRemoved {
            conv_id,
            user_id,
            at,
            ..
        } = event
        else {
            unreachable!("State::apply dispatches only Event::MemberRemoved here")
        };
        if let Some(conv) = self.conversations.get_mut(conv_id) {
            conv.members.remove(user_id);
            conv.updated_at = *at;
        }
        if let Some(set) = self.user_conversations.get_mut(user_id) {
            set.remove(conv_id);
        }
        self.unread.remove(&(*conv_id, *user_id));
    }
}

impl State {
    pub(super) fn apply_member_promoted(&mut self, event: &Event) {
        let Event::MemberPromoted {
            conv_id,
            user_id,
            at,
            ..
        } = event
        else {
            unreachable!("State::apply dispatches only Event::MemberPromoted here")
        };
        if let Some(conv) = self.conversations.get_mut(conv_id) {
            if let Some(member) = conv.members.get_mut(user_id) {
                member.is_admin = true;
            }
            conv.updated_at = *at;
        }
    }

    /// Admins only; the fields given replace the old values. Nothing is
    /// stored when nothing changes.
    pub(super) fn decide_update_conversation(
        &self,
        command: &Command,
    ) -> Result<Decision, Rejection> {
        let Command::UpdateConversation {
            by,
            conv_id,
            title,
            description,
            is_public,
            at,
        } = command
        else {
            unreachable!("State::decide dispatches only Command::UpdateConversation here")
        };
        let conv = self.member_conversation(*conv_id, *by)?;
        if !conv.is_admin(*by) {
            return Err(Rejection::NotAnAdmin);
        }
        let title = title.as_ref().unwrap_or(&conv.title);
        let description = description.as_ref().unwrap_or(&conv.description);
        let is_public = is_public.unwrap_or(conv.is_public);
        if *title == conv.title && *description == conv.description && is_public == conv.is_public {
            return Ok(Decision::none(Reply::Done));
        }
        Ok(Decision::one(
            Event::ConversationUpdated {
                conv_id: *conv_id,
                seq: conv.last_seq + 1,
                by: *by,
                title: title.clone(),
                description: description.clone(),
                is_public,
                at: *at,
            },
            Reply::Done,
        ))
    }

    pub(super) fn apply_conversation_updated(&mut self, event: &Event) {
        let Event::ConversationUpdated {
            conv_id,
            title,
            description,
            is_public,
            at,
            ..
        } = event
        else {
            unreachable!("State::apply dispatches only Event::ConversationUpdated here")
        };
        if let Some(conv) = self.conversations.get_mut(conv_id) {
            conv.title = title.clone();
            conv.description = description.clone();
            conv.is_public = *is_public;
            conv.updated_at = *at;
        }
    }

    pub(super) fn decide_delete_conversation(
        &self,
        command: &Command,
    ) -> Result<Decision, Rejection> {
        let Command::DeleteConversation { by, conv_id, at } = command else {
            unreachable!("State::decide dispatches only Command::DeleteConversation here")
        };
        let conv = self.member_conversation(*conv_id, *by)?;
        if !conv.is_admin(*by) {
            return Err(Rejection::NotAnAdmin);
        }
        Ok(Decision::one(
            Event::ConversationDeleted {
                conv_id: *conv_id,
                seq: conv.last_seq + 1,
                by: *by,
                at: *at,
            },
            Reply::Done,
        ))
    }

    /// The conversation leaves every member's list, its messages can no
    /// longer be reached (they stay in the history tree, keyed by a
    /// conversation id never given again), and a direct pair may start a
    /// new one. What is keyed by
    /// the conversation elsewhere (read positions and idempotency keys of
    /// former members) stays: nothing can reach it again, and cleaning it
    /// would cost a scan of every conversation's keys on the writer.
    pub(super) fn apply_conversation_deleted(&mut self, event: &Event) {
        let Event::ConversationDeleted { conv_id, .. } = event else {
            unreachable!("State::apply dispatches only Event::ConversationDeleted here")
        };
        let Some(conv) = self.conversations.remove(conv_id) else {
            return;
        };
        for user_id in conv.members.keys() {
            if let Some(set) = self.user_conversations.get_mut(user_id) {
                set.remove(conv_id);
            }
            self.unread.remove(&(*conv_id, *user_id));
        }
        // Its messages' references to media files go (the files may then
        // be removed).
        let keys: Vec<String> = self
            .history
            .messages(*conv_id, 0..MessageId::MAX, false)
            .flat_map(|m| m.attachments.into_iter().map(|a| a.blob_key))
            .collect();
        for key in keys {
            self.release_media(&key);
        }
        if conv.kind == ConvKind::Direct {
            // A direct conversation's members never change: its pair.
            let mut ids = conv.members.keys().copied();
            let first = ids.next().unwrap_or(conv.owner);
            let key = pair(first, ids.next().unwrap_or(first));
            if self.directs.get(&key) == Some(conv_id) {
                self.directs.remove(&key);
            }
        }
    }
}

/// Adding someone to a group needs their consent: `allow_group_invite`
/// (issue 17; the original stored it and ignored it).
fn consents_to_invite(user: &User) -> Result<(), Rejection> {
    if user.profile.allow_group_invite {
        Ok(())
    } else {
        Err(Rejection::GroupInviteRefused {
            user_id: user.id,
            username: user.username.clone(),
        })
    }
}
