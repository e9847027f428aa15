//! Property: whatever commands arrive, the live state equals a full replay of
//! the log from offset 0, and equals what a restart recovers from a snapshot
//! plus the log's tail. A rejected command (or an idempotent repeat) changes
//! nothing; an accepted one changes exactly what its events say.
//!
//! Ids are drawn from small ranges that include unknown ones (0, and ids not
//! yet assigned), so many generated commands are invalid and must be refused.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use vato_eventlog::command::{CallAction, ContactFlag, ExternalIdentity};
use vato_eventlog::log::Log;
use vato_eventlog::profile::{Nullable, ProfileChanges, SettingsChanges};
use vato_eventlog::state::REVOCATION_GRACE;
use vato_eventlog::{Command, Envelope, State, Store, StoreConfig};

/// Who issues a command: a fixed id (possibly unknown), or someone resolved
/// against the state when the command is built, so that most commands are
/// plausible and the interesting checks (ownership, deletion, toggles) run.
#[derive(Clone, Copy, Debug)]
enum Who {
    Id(u64),
    /// The n-th member (modulo) of the target conversation.
    Member(u8),
    /// The author of the target message.
    Author,
}

/// Which message: a fixed id (possibly unknown), or the n-th newest one.
#[derive(Clone, Copy, Debug)]
enum Msg {
    Id(u64),
    Recent(u8),
}

/// Which conversation: a fixed id (possibly unknown), or the target
/// message's own conversation.
#[derive(Clone, Copy, Debug)]
enum Where {
    Id(u64),
    OfMessage,
}

#[derive(Clone, Debug)]
enum Op {
    Register {
        name: u8,
        phone: Option<u8>,
    },
    Login {
        user: u64,
    },
    Direct {
        by: u64,
        other: u64,
    },
    Group {
        by: u64,
        members: Vec<u64>,
    },
    Add {
        by: Who,
        conv: u64,
        user: u64,
    },
    Remove {
        by: Who,
        conv: u64,
        user: u64,
    },
    Post {
        sender: Who,
        conv: u64,
        content: u8,
        kind: u8,
        reply_to: Option<Msg>,
        forwarded_from: Option<Msg>,
        client_id: Option<u8>,
    },
    Edit {
        by: Who,
        conv: Where,
        message: Msg,
        content: u8,
    },
    Delete {
        by: Who,
        conv: Where,
        message: Msg,
    },
    Read {
        by: Who,
        conv: Where,
        message: Msg,
    },
    React {
        by: Who,
        conv: Where,
        message: Msg,
        emoji: u8,
    },
    Attach {
        by: Who,
        conv: Where,
        message: Msg,
    },
    /// Logout: revokes refresh token `token` of `user`, which expires at
    /// an offset of `expiry` grace periods from now (some long past, so
    /// that later revocations forget them).
    Revoke {
        user: u64,
        token: u8,
        expiry: u8,
    },
    Offline {
        user: u64,
    },
    /// A node's delivery probe (issue 16): an event that changes nothing.
    Probe {
        nonce: u64,
    },
    /// Presence: the first socket of `user` on node `node` opened
    /// (`open`), or its last closed; or (`user` None) the node restarted.
    Presence {
        user: Option<u64>,
        node: u64,
        open: bool,
    },
    /// A profile write: a new username (maybe taken), phone number (maybe
    /// taken) and `allow_group_invite`.
    Profile {
        user: u64,
        name: Option<u8>,
        phone: Option<u8>,
        invite: Option<bool>,
    },
    /// A phone login code (issue 13) for number `phone`: issued, or tried
    /// (right when `code` matches the number's last code).
    Otp {
        phone: u8,
        code: u8,
        verify: bool,
    },
    /// A call (issue 15) in `conv` by `by`: started (action 0), answered,
    /// rejected, ended, retyped, deleted, or timed out (6), on call
    /// `call` (1..=3).
    Call {
        by: Who,
        conv: u64,
        action: u8,
        call: u64,
    },
    /// A push device `token` (0..3) registered (or removed) by `user`.
    Device {
        user: u64,
        token: u8,
        remove: bool,
    },
    /// `user` marks their notification `id` read (ids include unknown ones
    /// and other users').
    ReadNotification {
        user: u64,
        id: u64,
    },
    /// A Google login of identity `subject`, named `name` if new.
    External {
        subject: u8,
        name: u8,
    },
    /// A settings write (`show_read_receipts`), or a first-use creation.
    Settings {
        user: u64,
        receipts: Option<bool>,
        create_only: bool,
    },
    /// Contacts (issue 14): `owner` adds `user` (maybe themselves, maybe
    /// twice), blocked or not.
    ContactAdd {
        owner: u64,
        user: u64,
        blocked: bool,
    },
    /// On contact `contact`, by `owner` (None: its real owner): 0 an
    /// update, 1 toggle the block, 2 toggle the favourite, 3 remove it.
    ContactChange {
        owner: Option<u64>,
        contact: u64,
        action: u8,
    },
    /// Group management (issue 14): a title and/or visibility change.
    UpdateConv {
        by: Who,
        conv: u64,
        title: Option<u8>,
        public: Option<bool>,
    },
    DeleteConv {
        by: Who,
        conv: u64,
    },
    /// Pin (or unpin) a message.
    Pin {
        by: Who,
        conv: Where,
        message: Msg,
        unpin: bool,
    },
    /// Forward a message of `conv` into `to`.
    Forward {
        by: Who,
        conv: Where,
        message: Msg,
        to: u64,
        client_id: Option<u8>,
    },
    /// An avatar set to one of a few media keys (shared between users), or
    /// removed (`key` None).
    Avatar {
        user: u64,
        key: Option<u8>,
    },
    /// Several commands submitted concurrently, so they share group commits.
    Burst(Vec<Op>),
    /// Restart: `clean` closes (final snapshot); otherwise the store is just
    /// dropped, like a crash after the last ack, and recovery uses whatever
    /// background snapshot exists plus the tail.
    Reopen {
        clean: bool,
    },
}

// "" is invalid, "Ana" collides with "ana" (names are case-insensitive).
const NAMES: [&str; 7] = ["ana", "Ana", "bo", "cy", "di", "ed", ""];
// "   " is blank text (refused); a blank image is allowed.
const CONTENTS: [&str; 4] = ["hello", "   ", "a longer message with ünïcödé", "x"];
const KINDS: [&str; 4] = ["text", "file", "image", "sticker"];
const EMOJIS: [&str; 3] = ["👍", "🎉", ""];

// Mostly ids that exist (or soon will), sometimes 0 or ones far ahead.
fn user() -> impl Strategy<Value = u64> {
    prop_oneof![10 => 1u64..6, 1 => Just(0u64), 1 => 6u64..9]
}
fn conv() -> impl Strategy<Value = u64> {
    prop_oneof![16 => 1u64..3, 2 => 3u64..5, 1 => Just(0u64), 1 => 5u64..9]
}
fn message() -> impl Strategy<Value = Msg> {
    prop_oneof![8 => (0u8..6).prop_map(Msg::Recent), 1 => Just(Msg::Id(0)), 1 => (1u64..40).prop_map(Msg::Id)]
}
fn member() -> impl Strategy<Value = Who> {
    prop_oneof![5 => (0u8..4).prop_map(Who::Member), 1 => user().prop_map(Who::Id)]
}
fn author() -> impl Strategy<Value = Who> {
    prop_oneof![3 => Just(Who::Author), 1 => member()]
}
fn of_message() -> impl Strategy<Value = Where> {
    prop_oneof![4 => Just(Where::OfMessage), 1 => conv().prop_map(Where::Id)]
}

fn simple_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0u8..7, proptest::option::of(0u8..3)).prop_map(|(name, phone)| Op::Register { name, phone }),
        1 => user().prop_map(|user| Op::Login { user }),
        2 => (user(), user()).prop_map(|(by, other)| Op::Direct { by, other }),
        2 => (user(), proptest::collection::vec(user(), 0..4)).prop_map(|(by, members)| Op::Group { by, members }),
        3 => (member(), conv(), user()).prop_map(|(by, conv, user)| Op::Add { by, conv, user }),
        1 => (member(), conv(), user()).prop_map(|(by, conv, user)| Op::Remove { by, conv, user }),
        14 => (
            member(),
            conv(),
            prop_oneof![6 => Just(0u8), 1 => 1u8..4],
            prop_oneof![8 => Just(0u8), 2 => Just(2u8), 1 => Just(3u8)],
            proptest::option::weighted(0.1, message()),
            proptest::option::weighted(0.05, message()),
            proptest::option::weighted(0.6, 0u8..3),
        )
            .prop_map(|(sender, conv, content, kind, reply_to, forwarded_from, client_id)| Op::Post {
                sender,
                conv,
                content,
                kind,
                reply_to,
                forwarded_from,
                client_id,
            }),
        3 => (author(), of_message(), message(), 0u8..4)
            .prop_map(|(by, conv, message, content)| Op::Edit { by, conv, message, content }),
        3 => (author(), of_message(), message()).prop_map(|(by, conv, message)| Op::Delete { by, conv, message }),
        3 => (member(), of_message(), message()).prop_map(|(by, conv, message)| Op::Read { by, conv, message }),
        4 => (member(), of_message(), message(), 0u8..3)
            .prop_map(|(by, conv, message, emoji)| Op::React { by, conv, message, emoji }),
        2 => (author(), of_message(), message()).prop_map(|(by, conv, message)| Op::Attach { by, conv, message }),
        2 => (user(), 0u8..6, 0u8..4).prop_map(|(user, token, expiry)| Op::Revoke { user, token, expiry }),
        1 => user().prop_map(|user| Op::Offline { user }),
        1 => (0u64..1000).prop_map(|nonce| Op::Probe { nonce }),
        2 => (proptest::option::weighted(0.9, user()), 1u64..4, proptest::bool::ANY)
            .prop_map(|(user, node, open)| Op::Presence { user, node, open }),
        2 => (
            user(),
            proptest::option::weighted(0.3, 0u8..7),
            proptest::option::weighted(0.3, 0u8..3),
            proptest::option::of(any::<bool>()),
        )
            .prop_map(|(user, name, phone, invite)| Op::Profile { user, name, phone, invite }),
        2 => (user(), proptest::option::of(any::<bool>()), any::<bool>())
            .prop_map(|(user, receipts, create_only)| Op::Settings { user, receipts, create_only }),
        2 => (user(), user(), proptest::bool::weighted(0.5))
            .prop_map(|(owner, user, blocked)| Op::ContactAdd { owner, user, blocked }),
        3 => (proptest::option::weighted(0.2, user()), 0u64..6, 0u8..4)
            .prop_map(|(owner, contact, action)| Op::ContactChange { owner, contact, action }),
        2 => (member(), conv(), proptest::option::of(0u8..3), proptest::option::of(any::<bool>()))
            .prop_map(|(by, conv, title, public)| Op::UpdateConv { by, conv, title, public }),
        1 => (member(), conv()).prop_map(|(by, conv)| Op::DeleteConv { by, conv }),
        3 => (member(), of_message(), message(), proptest::bool::weighted(0.3))
            .prop_map(|(by, conv, message, unpin)| Op::Pin { by, conv, message, unpin }),
        3 => (member(), of_message(), message(), conv(), proptest::option::weighted(0.5, 0u8..3))
            .prop_map(|(by, conv, message, to, client_id)| Op::Forward { by, conv, message, to, client_id }),
        2 => (user(), proptest::option::weighted(0.7, 0u8..3)).prop_map(|(user, key)| Op::Avatar { user, key }),
        2 => (0u8..3, 0u8..2, proptest::bool::weighted(0.6))
            .prop_map(|(phone, code, verify)| Op::Otp { phone, code, verify }),
        1 => (0u8..3, 0u8..7).prop_map(|(subject, name)| Op::External { subject, name }),
        4 => (member(), conv(), 0u8..7, 1u64..4)
            .prop_map(|(by, conv, action, call)| Op::Call { by, conv, action, call }),
        2 => (user(), 0u8..3, proptest::bool::weighted(0.3))
            .prop_map(|(user, token, remove)| Op::Device { user, token, remove }),
        3 => (user(), 0u64..12).prop_map(|(user, id)| Op::ReadNotification { user, id }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        30 => simple_op(),
        2 => proptest::collection::vec(simple_op(), 2..10).prop_map(Op::Burst),
        1 => any::<bool>().prop_map(|clean| Op::Reopen { clean }),
    ]
}

/// A fixed prelude (four users, a group and a direct conversation) so that
/// most random commands have something valid to refer to.
fn prelude() -> Vec<Op> {
    let mut ops: Vec<Op> = [0u8, 2, 3, 4]
        .into_iter()
        .map(|name| Op::Register { name, phone: None })
        .collect();
    ops.push(Op::Group {
        by: 1,
        members: vec![2, 3],
    });
    ops.push(Op::Direct { by: 1, other: 4 });
    // User 4 has user 1 as a contact: toggling its block decides whether
    // 1 may post in their direct conversation.
    ops.push(Op::ContactAdd {
        owner: 4,
        user: 1,
        blocked: false,
    });
    ops
}

fn message_of(state: &State, message: Msg) -> u64 {
    match message {
        Msg::Id(id) => id,
        // Message ids are 1..=count.
        Msg::Recent(n) => state.message_count().saturating_sub(n as u64),
    }
}

fn conv_of(state: &State, place: Where, message: u64) -> u64 {
    match place {
        Where::Id(id) => id,
        Where::OfMessage => state.message(message).map_or(0, |m| m.conv_id),
    }
}

fn user_of(state: &State, who: Who, conv: u64, message: u64) -> u64 {
    match who {
        Who::Id(id) => id,
        Who::Member(n) => state.conversation(conv).map_or(0, |c| {
            c.members
                .keys()
                .nth(n as usize % c.members.len().max(1))
                .copied()
                .unwrap_or(0)
        }),
        Who::Author => state.message(message).map_or(0, |m| m.sender),
    }
}

/// The concrete command for `op`, resolving `Who`/`Where` against `state`.
fn command(op: &Op, state: &State, at: i64) -> Command {
    // The (conversation, actor) of a message-targeted op.
    let target = |by: Who, place: Where, message: Msg| {
        let message_id = message_of(state, message);
        let conv_id = conv_of(state, place, message_id);
        (conv_id, user_of(state, by, conv_id, message_id), message_id)
    };
    match op {
        Op::Register { name, phone } => {
            let mut command = common::register(NAMES[*name as usize], at);
            if let Command::Register { phone_number, .. } = &mut command {
                *phone_number = phone.map(|p| format!("+1555000{p}"));
            }
            command
        }
        Op::Login { user } => Command::RecordLogin { user_id: *user, at },
        Op::Direct { by, other } => common::direct(*by, *other, at),
        Op::Group { by, members } => common::group(*by, members, at),
        Op::Add { by, conv, user } => Command::AddMember {
            by: user_of(state, *by, *conv, 0),
            conv_id: *conv,
            user_id: *user,
            at,
        },
        Op::Remove { by, conv, user } => Command::RemoveMember {
            by: user_of(state, *by, *conv, 0),
            conv_id: *conv,
            user_id: *user,
            at,
        },
        Op::Post {
            sender,
            conv,
            content,
            kind,
            reply_to,
            forwarded_from,
            client_id,
        } => Command::PostMessage {
            sender: user_of(state, *sender, *conv, 0),
            conv_id: *conv,
            content: CONTENTS[*content as usize].to_string(),
            message_type: KINDS[*kind as usize].to_string(),
            reply_to: reply_to.map(|m| message_of(state, m)),
            forwarded_from: forwarded_from.map(|m| message_of(state, m)),
            client_id: client_id.map(|c| format!("client-{c}")),
            at,
        },
        Op::Edit {
            by,
            conv,
            message,
            content,
        } => {
            let (conv_id, by, message_id) = target(*by, *conv, *message);
            Command::EditMessage {
                by,
                conv_id,
                message_id,
                content: CONTENTS[*content as usize].to_string(),
                at,
            }
        }
        Op::Delete { by, conv, message } => {
            let (conv_id, by, message_id) = target(*by, *conv, *message);
            common::delete(by, conv_id, message_id, at)
        }
        Op::Read { by, conv, message } => {
            let (conv_id, by, message_id) = target(*by, *conv, *message);
            common::mark_read(by, conv_id, message_id, at)
        }
        Op::React {
            by,
            conv,
            message,
            emoji,
        } => {
            let (conv_id, by, message_id) = target(*by, *conv, *message);
            common::toggle_reaction(by, conv_id, message_id, EMOJIS[*emoji as usize], at)
        }
        Op::Attach { by, conv, message } => {
            let (conv_id, by, message_id) = target(*by, *conv, *message);
            Command::StoreAttachment {
                by,
                conv_id,
                message_id,
                file_name: "cat.png".to_string(),
                file_size: 1234,
                mime_type: "image/png".to_string(),
                blob_key: format!("sha256-{at}"),
                at,
            }
        }
        Op::Revoke {
            user,
            token,
            expiry,
        } => Command::RevokeRefreshToken {
            jti: format!("jti-{token}"),
            user_id: *user,
            // From two grace periods ago (forgotten at once) to one ahead.
            expires_at: at + (*expiry as i64 - 2) * REVOCATION_GRACE,
            at,
        },
        Op::Offline { user } => Command::GoOffline { user_id: *user, at },
        Op::Probe { nonce } => Command::Probe {
            node: 7,
            nonce: *nonce,
        },
        Op::Presence {
            user: Some(user),
            node,
            open: true,
        } => Command::SocketsOpened {
            user_id: *user,
            node: *node,
            at,
        },
        Op::Presence {
            user: Some(user),
            node,
            open: false,
        } => Command::SocketsClosed {
            user_id: *user,
            node: *node,
            at,
        },
        Op::Presence {
            user: None, node, ..
        } => Command::ClearNodePresence { node: *node, at },
        Op::Profile {
            user,
            name,
            phone,
            invite,
        } => Command::UpdateProfile {
            user_id: *user,
            changes: Box::new(ProfileChanges {
                username: name.map(|n| NAMES[n as usize].to_string()),
                phone_number: phone.map(|p| Nullable::Value(format!("+1555000{p}"))),
                allow_group_invite: *invite,
                ..ProfileChanges::default()
            }),
            at,
        },
        Op::Settings {
            user,
            receipts,
            create_only,
        } => {
            if *create_only {
                Command::CreateSettings { user_id: *user, at }
            } else {
                Command::UpdateSettings {
                    user_id: *user,
                    changes: Box::new(SettingsChanges {
                        show_read_receipts: *receipts,
                        ..SettingsChanges::default()
                    }),
                    at,
                }
            }
        }
        Op::ContactAdd {
            owner,
            user,
            blocked,
        } => Command::AddContact {
            owner: *owner,
            user_id: *user,
            nickname: format!("n{user}"),
            is_blocked: *blocked,
            is_favorite: false,
            at,
        },
        Op::ContactChange {
            owner,
            contact,
            action,
        } => {
            let contact_id = *contact;
            // The contact's owner, found by asking each plausible user.
            let owner = owner.unwrap_or_else(|| {
                (1..9)
                    .find(|o| state.contact_of(*o, contact_id).is_some())
                    .unwrap_or(0)
            });
            match action {
                0 => Command::UpdateContact {
                    owner,
                    contact_id,
                    nickname: Some(format!("nick{}", at % 3)),
                    is_blocked: Some(at % 2 == 0),
                    is_favorite: None,
                    at,
                },
                1 | 2 => Command::ToggleContact {
                    owner,
                    contact_id,
                    flag: if *action == 1 {
                        ContactFlag::Blocked
                    } else {
                        ContactFlag::Favorite
                    },
                    at,
                },
                _ => Command::RemoveContact {
                    owner,
                    contact_id,
                    at,
                },
            }
        }
        Op::UpdateConv {
            by,
            conv,
            title,
            public,
        } => Command::UpdateConversation {
            by: user_of(state, *by, *conv, 0),
            conv_id: *conv,
            title: title.map(|t| ["crew", "team", "Ünïcödé"][t as usize].to_string()),
            description: None,
            is_public: *public,
            at,
        },
        Op::DeleteConv { by, conv } => Command::DeleteConversation {
            by: user_of(state, *by, *conv, 0),
            conv_id: *conv,
            at,
        },
        Op::Pin {
            by,
            conv,
            message,
            unpin,
        } => {
            let (conv_id, by, message_id) = target(*by, *conv, *message);
            if *unpin {
                Command::UnpinMessage {
                    by,
                    conv_id,
                    message_id,
                    at,
                }
            } else {
                Command::PinMessage {
                    by,
                    conv_id,
                    message_id,
                    at,
                }
            }
        }
        Op::Forward {
            by,
            conv,
            message,
            to,
            client_id,
        } => {
            let (conv_id, by, message_id) = target(*by, *conv, *message);
            Command::ForwardMessage {
                by,
                conv_id,
                message_id,
                to_conv: *to,
                client_id: client_id.map(|c| format!("client-{c}")),
                at,
            }
        }
        Op::Avatar { user, key } => Command::SetAvatar {
            user_id: *user,
            avatar: key.map(|k| format!("{k:064x}.png")),
            at,
        },
        Op::Otp {
            phone,
            code,
            verify: false,
        } => Command::IssueOtp {
            phone: format!("+1555000{phone}"),
            code_hash: format!("h{code}"),
            expires_at: at + 600_000_000,
            at,
        },
        Op::Otp {
            phone,
            code,
            verify: true,
        } => Command::VerifyOtp {
            phone: format!("+1555000{phone}"),
            code_hash: format!("h{code}"),
            first_name: "Ana".into(),
            last_name: String::new(),
            at,
        },
        Op::External { subject, name } => Command::ExternalLogin {
            identity: Box::new(ExternalIdentity {
                provider: "google".into(),
                subject: format!("sub{subject}"),
                username: NAMES[*name as usize].into(),
                email: String::new(),
                first_name: String::new(),
                last_name: "Lima".into(),
            }),
            at,
        },
        Op::Call {
            by,
            conv,
            action,
            call,
        } => {
            let by = user_of(state, *by, *conv, 0);
            match action {
                0 => Command::StartCall {
                    by,
                    conv_id: *conv,
                    call_type: "voice".into(),
                    participants: Vec::new(),
                    at,
                },
                6 => Command::CallTimeout {
                    call_id: *call,
                    ring: 0,
                    at,
                },
                _ => Command::CallAction {
                    by,
                    conv_id: *conv,
                    call_id: *call,
                    action: match action {
                        1 => CallAction::Answer,
                        2 => CallAction::Reject,
                        3 => CallAction::End,
                        4 => CallAction::SetType("video".into()),
                        _ => CallAction::Delete,
                    },
                    at,
                },
            }
        }
        Op::Device {
            user,
            token,
            remove,
        } => match remove {
            true => Command::RemoveDevice {
                by: *user,
                token: format!("token-{token}"),
                at,
            },
            false => Command::RegisterDevice {
                by: *user,
                token: format!("token-{token}"),
                platform: ["android", "ios"][(*token % 2) as usize].into(),
                at,
            },
        },
        Op::ReadNotification { user, id } => Command::ReadNotification {
            by: *user,
            notification_id: *id,
            at,
        },
        Op::Burst(_) | Op::Reopen { .. } => unreachable!("not a single command"),
    }
}

/// Counts what the run exercised, to check the generator is not vacuous.
#[derive(Default)]
struct Tally {
    accepted: usize,
    rejected: usize,
    repeats: usize,
    /// "Kind: reason" → count, printed by the generator check.
    reasons: BTreeMap<String, usize>,
}

fn kind(op: &Op) -> String {
    format!("{op:?}")
        .split([' ', '('])
        .next()
        .unwrap_or_default()
        .to_string()
}

fn run_case(ops: &[Op], snapshot_every: u64) -> Result<Tally, TestCaseError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let config: StoreConfig = common::config(dir.path(), snapshot_every);
    let rt = common::runtime();
    let mut store: Store = common::open(config.clone());
    let mut tally = Tally::default();
    let mut at = 1_000_000i64;
    let all: Vec<Op> = prelude().into_iter().chain(ops.iter().cloned()).collect();

    for op in &all {
        match op {
            Op::Reopen { clean } => {
                let before = store.state().detached();
                if *clean {
                    common::close(store);
                } else {
                    drop(store);
                }
                store = common::open(config.clone());
                prop_assert!(*store.state() == before, "state changed across a restart");
            }
            Op::Burst(ops) => {
                let handles: Vec<_> = ops
                    .iter()
                    .map(|op| {
                        at += 1;
                        let command = command(op, &store.state(), at);
                        let store = store.clone();
                        rt.spawn(async move { store.submit(command).await })
                    })
                    .collect();
                for (op, handle) in ops.iter().zip(handles) {
                    match rt.block_on(handle).expect("task").expect("storage error") {
                        Ok(applied) if applied.events().is_empty() => tally.repeats += 1,
                        Ok(_) => tally.accepted += 1,
                        Err(rejection) => {
                            tally.rejected += 1;
                            *tally
                                .reasons
                                .entry(format!("{}: {rejection}", kind(op)))
                                .or_default() += 1;
                        }
                    }
                }
            }
            op => {
                at += 1;
                let before = store.state().detached();
                let outcome = common::submit(&rt, &store, command(op, &before, at));
                let after = store.state().detached();
                match outcome {
                    Err(rejection) => {
                        tally.rejected += 1;
                        *tally
                            .reasons
                            .entry(format!("{}: {rejection}", kind(op)))
                            .or_default() += 1;
                        prop_assert!(
                            after == before,
                            "rejected ({rejection}) but the state changed: {op:?}"
                        );
                    }
                    Ok(applied) if applied.events().is_empty() => {
                        tally.repeats += 1;
                        prop_assert!(after == before, "no events but the state changed: {op:?}");
                    }
                    Ok(applied) => {
                        tally.accepted += 1;
                        // The events handed back are exactly the change, and
                        // they are durable at the offsets they claim.
                        let mut expected = before;
                        for envelope in applied.events() {
                            expected.apply(envelope);
                            let stored = store.log().get(envelope.offset).expect("log read");
                            prop_assert_eq!(stored.as_ref(), Some(envelope));
                        }
                        prop_assert!(
                            expected == after,
                            "events do not explain the new state: {op:?}"
                        );
                    }
                }
            }
        }
    }

    let live = store.state().detached();
    check_reads(store.log(), &live)?;
    common::close(store);

    // Full replay from offset 0.
    let replayed = common::rebuild(dir.path()).expect("rebuild");
    prop_assert!(
        replayed == live,
        "replay from offset 0 differs from the live state"
    );

    // Restart from the snapshot close() wrote.
    let store = common::open(config.clone());
    prop_assert!(
        *store.state() == live,
        "restart from the final snapshot differs"
    );
    common::close(store);

    // Restart with no snapshot: the history tree is made again from the
    // whole log. (Restarts from a snapshot taken mid-way plus the log's
    // tail are the `Reopen { clean: false }` steps: snapshots are taken
    // every few events here.)
    common::discard_snapshot(dir.path());
    let store = common::open(config);
    prop_assert!(
        *store.state() == live,
        "a replay into a new history tree differs from the live state"
    );
    drop(store);
    Ok(tally)
}

/// The read paths the server uses (`since` replay, history pages) agree
/// with the global log: per conversation, seqs 1..=last_seq in order, and
/// any page is the matching slice.
fn check_reads(log: &Log, live: &State) -> Result<(), TestCaseError> {
    let all: Vec<Envelope> = log
        .read_from(0)
        .collect::<Result<_, _>>()
        .expect("read_from");
    prop_assert_eq!(all.len() as u64, live.next_offset);
    for conv in live.conversations.values() {
        // The unread counters `apply` keeps equal their definition.
        for member in conv.members.keys() {
            prop_assert_eq!(
                live.unread_count(conv, *member),
                live.unread_recount(conv, *member),
                "unread counter of user {} in conversation {}",
                member,
                conv.id
            );
        }
        let id = conv.id;
        let expected: Vec<Envelope> = all
            .iter()
            .filter(|e| e.event.conv_seq().is_some_and(|(c, _)| c == id))
            .cloned()
            .collect();
        let seqs: Vec<u64> = expected
            .iter()
            .filter_map(|e| e.event.conv_seq())
            .map(|(_, s)| s)
            .collect();
        prop_assert_eq!(seqs, (1..=conv.last_seq).collect::<Vec<_>>());
        prop_assert_eq!(
            &log.conv_after(id, 0, usize::MAX).expect("conv_after"),
            &expected
        );
        let mut newest_first = expected.clone();
        newest_first.reverse();
        let before_end = log
            .conv_before(id, conv.last_seq + 1, usize::MAX)
            .expect("conv_before");
        prop_assert_eq!(&before_end, &newest_first);
        // Pages from the middle.
        let mid = conv.last_seq / 2;
        let page: Vec<Envelope> = expected
            .iter()
            .skip(mid as usize)
            .take(3)
            .cloned()
            .collect();
        prop_assert_eq!(log.conv_after(id, mid, 3).expect("conv_after"), page);
        let page: Vec<Envelope> = newest_first
            .iter()
            .skip((conv.last_seq - mid) as usize)
            .take(2)
            .cloned()
            .collect();
        prop_assert_eq!(log.conv_before(id, mid + 1, 2).expect("conv_before"), page);
    }
    Ok(())
}

proptest! {
    // 24 cases of up to 60 commands: about a second in release; soak with
    // PROPTEST_CASES=5000. Failures are saved beside this file
    // (replay_prop.proptest-regressions) and replayed first.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(24),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn live_state_equals_replay_and_snapshot_plus_tail(
        ops in proptest::collection::vec(op(), 0..60),
        snapshot_every in 2u64..20,
    ) {
        run_case(&ops, snapshot_every)?;
    }
}

/// The generator must produce a real mix, or the property above proves
/// little: run a fixed-seed batch and look at the outcomes.
#[test]
fn generator_exercises_accepts_rejects_and_repeats() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, TestRng, TestRunner};

    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::deterministic_rng(Default::default()),
    );
    let mut totals = Tally::default();
    let mut kinds = BTreeSet::new();
    for _ in 0..6 {
        let ops = proptest::collection::vec(op(), 40..60)
            .new_tree(&mut runner)
            .expect("ops")
            .current();
        for op in &ops {
            kinds.insert(kind(op));
        }
        let tally = run_case(&ops, 5).expect("property holds");
        totals.accepted += tally.accepted;
        totals.rejected += tally.rejected;
        totals.repeats += tally.repeats;
        for (reason, n) in tally.reasons {
            *totals.reasons.entry(reason).or_default() += n;
        }
    }
    eprintln!("rejections: {:#?}", totals.reasons);
    eprintln!(
        "accepted {}, rejected {}, no-op repeats {}",
        totals.accepted, totals.rejected, totals.repeats
    );
    // Six runs of at least 40 commands plus the prelude: demand a real share
    // of each outcome.
    assert!(totals.accepted >= 120, "only {} accepted", totals.accepted);
    assert!(totals.rejected >= 50, "only {} rejected", totals.rejected);
    assert!(
        totals.repeats >= 5,
        "only {} idempotent repeats",
        totals.repeats
    );
    assert!(kinds.len() >= 12, "op kinds generated: {kinds:?}");
}
