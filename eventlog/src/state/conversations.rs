//! Conversations: direct and group conversations and their members.

use std::collections::BTreeMap;

use crate::command::{Command, Invalid, Rejection, Reply};
use crate::event::{ConvKind, Event};

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
            message_ids: Vec::new(),
            last_message: None,
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
        // Anyone may leave; only admins may remove someone else.
        if by != user_id && !conv.members.get(by).is_some_and(|m| m.is_admin) {
            return Err(Rejection::NotAnAdmin);
        }
        if !conv.members.contains_key(user_id) {
            return Err(Rejection::NotAMember);
        }
        Ok(Decision::one(
            Event::MemberRemoved {
                conv_id: *conv_id,
                seq: conv.last_seq + 1,
                user_id: *user_id,
                by: *by,
                at: *at,
            },
            Reply::Done,
        ))
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
