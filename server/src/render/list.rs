//! The conversation list as JSON text, written straight into one buffer.
//!
//! A user in 500 groups of 8 gets 3 MiB: 500 conversation objects holding
//! 4,000 member objects, each with a nested user and a timestamp. Written
//! through serde's derived `Serialize` of [`ConversationView`], every key
//! was escaped byte by byte, every timestamp was a `String` of its own and
//! every nested user cost an `Arc` count up and down; that was most of the
//! list's time (perf, BENCHMARKS.md #12). Here the fixed parts are written
//! as bytes, timestamps and users straight into the buffer, and what the
//! user typed (title, description) and the last message still go through
//! serde_json. The bytes are exactly those of serializing the
//! `ConversationView`s, which stays the object's one definition (the
//! detail route, the OpenAPI schema); the test below holds the two equal.

use bytes::Bytes;
use parking_lot::Mutex;
use vato_eventlog::state::Conversation;
use vato_eventlog::{State, UserId};

use super::views::{MessageView, UserRef};
use crate::clock::format_into;

/// `[conversation, ...]` for `viewer`, as `serde_json::to_vec` of their
/// [`super::views::ConversationView`]s would write it.
pub fn conversations_text<'a>(
    state: &'a State,
    conversations: impl ExactSizeIterator<Item = &'a Conversation>,
    viewer: UserId,
) -> Bytes {
    let base = super::media_base();
    // A few KiB per conversation (6.3 KiB a group of 8 in the benchmark):
    // reserved once, never copied to grow; pages not written are never
    // touched.
    let mut out = ListBuffer::take(conversations.len() * 8192 + 2);
    out.push(b'[');
    for (i, c) in conversations.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        conversation(state, c, viewer, &base, &mut out);
    }
    out.push(b']');
    Bytes::from_owner(ListBuffer(out))
}

/// A list's buffer, given back for the next list once the response is
/// sent. A fresh 3 MiB buffer is mapped anew each time (allocations of
/// 1 MiB and more are, see `give_big_allocations_back` in main.rs), and
/// faulting its pages in was a tenth of a list call (perf, BENCHMARKS.md
/// #12); kept, it costs its touched pages of RSS, at most [`SPARES`] of
/// [`MAX_SPARE`] bytes.
struct ListBuffer(Vec<u8>);

const SPARES: usize = 2;
const MAX_SPARE: usize = 8 << 20;
static SPARE: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

impl ListBuffer {
    fn take(capacity: usize) -> Vec<u8> {
        let mut buffer = SPARE.lock().pop().unwrap_or_default();
        buffer.reserve(capacity);
        buffer
    }
}

impl AsRef<[u8]> for ListBuffer {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for ListBuffer {
    fn drop(&mut self) {
        let mut buffer = std::mem::take(&mut self.0);
        if buffer.capacity() <= MAX_SPARE {
            buffer.clear();
            let mut spare = SPARE.lock();
            if spare.len() < SPARES {
                spare.push(buffer);
            }
        }
    }
}

fn conversation(state: &State, c: &Conversation, viewer: UserId, base: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"id\":");
    number(out, c.id);
    out.extend_from_slice(b",\"title\":");
    string(out, &c.title);
    out.extend_from_slice(b",\"conversation_type\":\"");
    out.extend_from_slice(c.kind.as_str().as_bytes());
    out.extend_from_slice(b"\",\"owner\":");
    number(out, c.owner);
    out.extend_from_slice(b",\"description\":");
    string(out, &c.description);
    out.extend_from_slice(b",\"created_at\":");
    timestamp(out, c.created_at);
    out.extend_from_slice(b",\"updated_at\":");
    timestamp(out, c.updated_at);
    out.extend_from_slice(b",\"avatar\":null,\"is_public\":");
    out.extend_from_slice(if c.is_public { b"true" } else { b"false" });
    out.extend_from_slice(b",\"invite_link\":null,\"members\":[");
    for (i, (user_id, m)) in c.members.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"id\":");
        number(out, m.id);
        out.extend_from_slice(b",\"user\":");
        UserRef::write(state, *user_id, viewer, base, out);
        out.extend_from_slice(b",\"nickname\":\"\",\"is_admin\":");
        out.extend_from_slice(if m.is_admin { b"true" } else { b"false" });
        out.extend_from_slice(b",\"joined_at\":");
        timestamp(out, m.joined_at);
        out.extend_from_slice(b",\"muted_until\":null}");
    }
    out.extend_from_slice(b"],\"last_message\":");
    // Its conversation is known: one read, not two (the owner block, then
    // the message).
    match c.last_message.and_then(|id| state.message_in(c.id, id)) {
        Some(m) => serde_json::to_writer(&mut *out, &MessageView::new(state, &m, Some(viewer)))
            .expect("a message object renders"),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"unread_count\":");
    number(out, state.unread_count(c, viewer) as u64);
    out.extend_from_slice(b",\"pinned_message_ids\":[");
    for (i, pin) in c.pins.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        number(out, pin.message_id);
    }
    out.extend_from_slice(b"]}");
}

fn number(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

fn string(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("a string renders");
}

fn timestamp(out: &mut Vec<u8>, micros: vato_eventlog::Micros) {
    out.push(b'"');
    format_into(out, micros);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use vato_eventlog::command::{Command, Reply};
    use vato_eventlog::State;

    use super::super::views::ConversationView;
    use super::super::with_media_base;

    fn run(state: &mut State, command: Command) -> Reply {
        state.execute(&command, &mut Vec::new()).unwrap()
    }

    fn register(state: &mut State, name: &str) -> u64 {
        let reply = run(
            state,
            Command::Register {
                username: name.into(),
                password_hash: "x".into(),
                email: format!("{name}@example.com"),
                display_name: format!("{name} \"the\" \u{e9}\u{1F600}\n"),
                phone_number: (name == "ana").then(|| "+15550100".into()),
                at: 1_762_173_900_123_456,
            },
        );
        match reply {
            Reply::User(id) => id,
            other => panic!("{other:?}"),
        }
    }

    fn post(state: &mut State, sender: u64, conv_id: u64, content: &str, at: i64) -> u64 {
        let reply = run(
            state,
            Command::PostMessage {
                sender,
                conv_id,
                content: content.into(),
                message_type: "text".into(),
                reply_to: None,
                forwarded_from: None,
                client_id: Some(format!("c-{at}")),
                at,
            },
        );
        match reply {
            Reply::Message { message_id, .. } => message_id,
            other => panic!("{other:?}"),
        }
    }

    /// The list's bytes equal serde's of the `ConversationView`s: titles
    /// and texts that need escaping, the viewer's own user among the
    /// members, others with and without an avatar, under a media base and
    /// under none, a conversation without messages, pins, unread counts.
    #[test]
    fn writes_what_serde_writes_of_the_views() {
        let mut state = State::default();
        let ana = register(&mut state, "ana");
        let bo = register(&mut state, "bo");
        let cy = register(&mut state, "cy");
        run(
            &mut state,
            Command::SetAvatar {
                user_id: bo,
                avatar: Some("b.png".into()),
                at: 2,
            },
        );
        let group = match run(
            &mut state,
            Command::CreateGroup {
                by: ana,
                title: "Tea \"time\"\t</b> \u{e9}\u{1F600}\\".into(),
                description: "line\nnext \u{1}".into(),
                is_public: true,
                member_ids: vec![bo, cy],
                at: 1_762_173_900_000_000,
            },
        ) {
            Reply::Conversation { conv_id, .. } => conv_id,
            other => panic!("{other:?}"),
        };
        // A conversation without messages.
        run(
            &mut state,
            Command::CreateDirect {
                by: ana,
                other: cy,
                at: 1_762_173_901_000_001,
            },
        );
        let first = post(
            &mut state,
            bo,
            group,
            "hello \"all\"\n",
            1_762_173_902_000_000,
        );
        post(
            &mut state,
            cy,
            group,
            "\u{1F600} reply",
            1_762_173_903_500_000,
        );
        run(
            &mut state,
            Command::PinMessage {
                by: ana,
                conv_id: group,
                message_id: first,
                at: 1_762_173_904_000_000,
            },
        );
        for viewer in [ana, bo, cy] {
            for base in ["", "http://127.0.0.1:8000"] {
                with_media_base(base.into(), || {
                    let convs: Vec<_> = state.conversations_of(viewer).collect();
                    assert_eq!(convs.len(), if viewer == bo { 1 } else { 2 });
                    let views: Vec<_> = convs
                        .iter()
                        .map(|c| ConversationView::new(&state, c, viewer))
                        .collect();
                    let expected = serde_json::to_string(&views).unwrap();
                    // The second list and after reuse the first's buffer.
                    let written = String::from_utf8(
                        super::conversations_text(&state, convs.into_iter(), viewer).to_vec(),
                    )
                    .unwrap();
                    assert_eq!(written, expected, "viewer {viewer}, base {base:?}");
                });
            }
        }
    }
}
