//! A tiny in-memory chat server speaking just enough of Vato's protocol for
//! vato-check to pass, with faults to inject so that it must fail.
//!
//! Hand-rolled HTTP/1.1 (one request per connection, `Connection: close`)
//! and a hand-made WebSocket handshake on the same port, handed to
//! tokio-tungstenite. Frames are built and named by vato-client's `frames`,
//! the same code the checker reads them with. Everything lives in one `Mutex<State>` that is never
//! held across an `.await`, so seqs and fan-out are trivially in order.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use vato_client::frames::{self, Kind};
use vato_client::socket::{CHAT, CONVERSATIONS};

const BLOCKED: &str = "This user does not accept messages from you.";

/// What the server gets wrong on purpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Behaves as the protocol says.
    None,
    /// A socket's own `message.new` is not echoed back to it.
    DropEcho,
    /// Every `message.new` is delivered twice to every socket.
    Duplicate,
    /// Sockets are accepted with no token, a bad token, or for non-members.
    AcceptAnyone,
    /// A `since` replay leaves out the first missed event.
    LossyResume,
    /// `logout/` answers 200 but the refresh token keeps working.
    IgnoreLogout,
    /// Blocks are stored but change nothing (the original's behaviour).
    IgnoreBlock,
    /// Any member may change a group and pin, as the original allowed.
    NoAdminCheck,
    /// A forward with a repeated `client_id` posts a second message.
    ForwardTwice,
    /// A message sent with files is stored with them, but its `message.new`
    /// leaves them out (the message shows up empty until reloaded).
    AttachmentsNotLive,
    /// Avatars are stored and named in every user object, but their URL
    /// answers 404 (a node that cannot read the shared media store).
    AvatarNotServed,
    /// WebRTC signalling goes to every socket of the conversation, the
    /// sender's too (the original excluded the sender but not others).
    WebrtcEchoed,
    /// Notifications are listed, but marking one read changes nothing.
    NotificationReadLost,
}

/// One listening node; dropping it stops accepting connections.
pub struct Node {
    pub base: String,
    accept: JoinHandle<()>,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// One node, demo users lalo/lalo123 and kalu/kalu123.
pub async fn start(fault: Fault) -> Node {
    listen(Arc::new(Server::new(fault))).await
}

/// Two nodes over one state: a stand-in for Vato's cluster mode.
pub async fn start_cluster(fault: Fault) -> (Node, Node) {
    let server = Arc::new(Server::new(fault));
    (listen(server.clone()).await, listen(server).await)
}

async fn listen(server: Arc<Server>) -> Node {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    let accept = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(handle(server.clone(), stream));
        }
    });
    Node {
        base: format!("http://{addr}"),
        accept,
    }
}

struct Server {
    fault: Fault,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    users: Vec<UserRec>,
    /// token → (user id, is an access token)
    tokens: HashMap<String, (i64, bool)>,
    conversations: Vec<Conversation>,
    /// Contact entries: (id, owner, user, is_blocked).
    contacts: Vec<(i64, i64, i64, bool)>,
    /// Attachment id → (conversation index, the file's bytes).
    files: HashMap<i64, (usize, Vec<u8>)>,
    /// The attachments the next `post` gives its message (taken by it).
    attachments: Vec<Value>,
    /// User → the file name of their avatar under `/media/`.
    avatars: HashMap<i64, String>,
    /// `/media/` file name → bytes.
    media: HashMap<String, Vec<u8>>,
    /// Call id → its conversation's index.
    calls: HashMap<i64, usize>,
    /// Notifications, oldest first: the contract's objects (`user` is the
    /// recipient).
    notifications: Vec<Value>,
    /// The `Host` of the request being answered, for absolute URLs.
    host: String,
    next_id: i64,
}

struct UserRec {
    id: i64,
    username: String,
    password: String,
    /// The profile's status message and the settings' theme: what the
    /// profile and settings checks write (and put back).
    status_message: String,
    theme: String,
}

impl UserRec {
    fn new(id: i64, username: &str, password: &str) -> UserRec {
        UserRec {
            id,
            username: username.into(),
            password: password.into(),
            status_message: String::new(),
            theme: "light".into(),
        }
    }
}

#[derive(Default)]
struct Conversation {
    id: i64,
    members: Vec<i64>,
    /// Groups only (issue 14): its title, admins, pinned message ids, and
    /// whether it was deleted (kept in place: sockets hold its index).
    title: String,
    admins: Vec<i64>,
    pins: Vec<i64>,
    deleted: bool,
    messages: Vec<Value>,
    /// Every seq-carrying frame, seq = index + 1.
    events: Vec<Value>,
    /// (sender, client_id) → index in `messages`.
    client_ids: HashMap<(i64, String), usize>,
    sockets: Vec<Subscriber>,
}

struct Subscriber {
    id: i64,
    user: i64,
    tx: mpsc::UnboundedSender<String>,
}

struct Request {
    method: String,
    path: String,
    query: HashMap<String, String>,
    headers: HashMap<String, String>,
    body: Value,
    /// The body as sent (multipart sends).
    raw: Vec<u8>,
}

impl Server {
    fn new(fault: Fault) -> Self {
        let mut state = State {
            next_id: 100,
            ..State::default()
        };
        for (id, name, password) in [(1, "lalo", "lalo123"), (2, "kalu", "kalu123")] {
            state.users.push(UserRec::new(id, name, password));
        }
        Self {
            fault,
            state: Mutex::new(state),
        }
    }

    /// Whether another member of conversation `idx` blocks `user` (every
    /// fake conversation is a direct one).
    fn blocked_in(&self, state: &State, idx: usize, user: i64) -> bool {
        self.fault != Fault::IgnoreBlock
            && state.conversations[idx]
                .members
                .iter()
                .any(|m| *m != user && state.blocks(*m, user))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn route(&self, req: &Request) -> (u16, Value) {
        let mut state = self.lock();
        let user = req
            .headers
            .get("authorization")
            .and_then(|h| h.strip_prefix("Bearer "))
            .and_then(|t| state.tokens.get(t))
            .filter(|(_, access)| *access)
            .map(|(id, _)| *id);
        let segments: Vec<&str> = req.path.trim_matches('/').split('/').collect();
        state.host = req.headers.get("host").cloned().unwrap_or_default();
        match (req.method.as_str(), segments.as_slice(), user) {
            ("GET", ["healthz"], _) => (200, json!("ok")),
            ("POST", ["api", "auth", "register"], _) => {
                let username = req.body["username"].as_str().unwrap_or_default();
                let password = req.body["password"].as_str().unwrap_or_default();
                if username.is_empty() || state.users.iter().any(|u| u.username == username) {
                    return (
                        400,
                        json!({"username": ["A user with that username already exists."]}),
                    );
                }
                if password.len() < 8 || req.body["password2"] != password {
                    return (
                        400,
                        json!({"password": ["Ensure this field has at least 8 characters."]}),
                    );
                }
                let id = state.id();
                state.users.push(UserRec::new(id, username, password));
                (201, state.session(id))
            }
            ("POST", ["api", "auth", "login"], _) => {
                let found = state
                    .users
                    .iter()
                    .find(|u| {
                        req.body["username"] == u.username.as_str()
                            && req.body["password"] == u.password.as_str()
                    })
                    .map(|u| u.id);
                match found {
                    Some(id) => (200, state.session(id)),
                    None => (
                        400,
                        json!({"non_field_errors": ["Unable to log in with provided credentials."]}),
                    ),
                }
            }
            ("POST", ["api", "auth", "token", "refresh"], _) => {
                let token = req.body["refresh"].as_str().unwrap_or_default();
                match state.tokens.get(token) {
                    Some((id, false)) => {
                        let id = *id;
                        let access = state.session(id)["access"].clone();
                        (200, json!({ "access": access }))
                    }
                    _ => (
                        401,
                        json!({"detail": "Token is invalid or expired", "code": "token_not_valid"}),
                    ),
                }
            }
            ("POST", ["api", "auth", "logout"], _) => {
                let token = req.body["refresh"].as_str().unwrap_or_default();
                if !matches!(state.tokens.get(token), Some((_, false))) {
                    return (400, json!({"detail": "Invalid token."}));
                }
                if self.fault != Fault::IgnoreLogout {
                    state.tokens.remove(token);
                }
                (200, json!({"detail": "Successfully logged out."}))
            }
            (_, _, None) => (
                401,
                json!({"detail": "Authentication credentials were not provided."}),
            ),
            ("GET", ["api", "auth", "profile", "me"], Some(me)) => (200, state.profile(me)),
            ("POST", ["api", "auth", "profile", "me", "avatar"], Some(me)) => {
                let file = multipart_parts(req).and_then(|(_, files)| files.into_iter().next());
                let Some((_, _, bytes)) = file else {
                    return (400, json!({"avatar": ["No file was submitted."]}));
                };
                if !(bytes.starts_with(b"\x89PNG") || bytes.starts_with(b"\xFF\xD8\xFF")) {
                    return (
                        400,
                        json!({"avatar": ["Upload a valid image. The file you uploaded was either not an image or a corrupted image."]}),
                    );
                }
                let name = format!("{}.png", state.id());
                state.media.insert(name.clone(), bytes);
                state.avatars.insert(me, name);
                (200, state.profile(me))
            }
            ("DELETE", ["api", "auth", "profile", "me", "avatar"], Some(me)) => {
                state.avatars.remove(&me);
                (200, json!({"message": "Avatar deleted successfully"}))
            }
            ("PATCH", ["api", "auth", "profile", "me"], Some(me)) => {
                if req.body["bio"]
                    .as_str()
                    .is_some_and(|b| b.chars().count() > 500)
                {
                    return (
                        400,
                        json!({"bio": ["Ensure this field has no more than 500 characters."]}),
                    );
                }
                if let (Some(status), Some(user)) = (
                    req.body["status_message"].as_str(),
                    state.users.iter_mut().find(|u| u.id == me),
                ) {
                    user.status_message = status.into();
                }
                (200, state.profile(me))
            }
            ("GET", ["api", "auth", "users", id], Some(_)) => match id.parse() {
                Ok(id) if state.users.iter().any(|u| u.id == id) => {
                    let mut user = state.profile(id);
                    user["settings"] = Value::Null;
                    (200, user)
                }
                _ => (404, json!({"detail": "No User matches the given query."})),
            },
            ("PATCH", ["api", "auth", "users", id], Some(me)) if *id != me.to_string() => (
                403,
                json!({"detail": "You do not have permission to perform this action."}),
            ),
            ("POST", ["api", "auth", "users", set], Some(me))
                if *set == "set-online" || *set == "set-offline" =>
            {
                let online = *set == "set-online";
                let frame = json!({
                    "type": Kind::Presence.name(), "user_id": me,
                    "is_online": online, "last_seen_at": "2026-01-01T00:00:00Z",
                })
                .to_string();
                for conversation in state
                    .conversations
                    .iter()
                    .filter(|c| c.members.contains(&me))
                {
                    for s in conversation.sockets.iter().filter(|s| s.user != me) {
                        let _ = s.tx.send(frame.clone());
                    }
                }
                let status = if online { "online" } else { "offline" };
                (200, json!({ "status": status }))
            }
            (method, ["api", "auth", "settings"], Some(me)) => {
                let theme = req.body["theme"].as_str();
                if method == "PATCH" {
                    match theme {
                        Some(t) if !["light", "dark", "auto"].contains(&t) => {
                            return (
                                400,
                                json!({"theme": [format!("\"{t}\" is not a valid choice.")]}),
                            );
                        }
                        Some(t) => {
                            if let Some(user) = state.users.iter_mut().find(|u| u.id == me) {
                                user.theme = t.into();
                            }
                        }
                        None => {}
                    }
                }
                (200, state.settings(me))
            }
            ("GET", ["api", "chat", "conversations"], Some(me)) => {
                let list: Vec<Value> = state
                    .conversations
                    .iter()
                    .filter(|c| c.members.contains(&me) && !c.deleted)
                    .map(|c| state.conversation_json(c))
                    .collect();
                (200, Value::Array(list))
            }
            ("GET", ["api", "chat", "contacts"], Some(me)) => {
                let list = state
                    .contacts
                    .iter()
                    .filter(|c| c.1 == me)
                    .map(|c| state.contact_json(*c))
                    .collect();
                (200, Value::Array(list))
            }
            ("GET", ["api", "chat", "notifications"], Some(me)) => {
                let mine = state.notifications.iter().rev();
                let mine = mine.filter(|n| n["user"] == me).cloned().collect();
                (200, Value::Array(mine))
            }
            (method, ["api", "chat", "notifications", id, rest @ ..], Some(me)) => {
                let fault = self.fault;
                let found = state
                    .notifications
                    .iter_mut()
                    .find(|n| n["id"].as_i64() == id.parse().ok() && n["user"] == me);
                match (method, rest, found) {
                    ("GET", [], Some(n)) => (200, n.clone()),
                    ("POST", ["read"], Some(n)) => {
                        if fault != Fault::NotificationReadLost {
                            n["is_read"] = json!(true);
                        }
                        (200, json!({"is_read": true, "id": n["id"]}))
                    }
                    _ => (404, json!({"detail": "Not found."})),
                }
            }
            ("POST", ["api", "chat", "calls"], Some(me)) => {
                let Some(idx) = req.body["conversation_id"]
                    .as_i64()
                    .and_then(|c| state.member_of(&c.to_string(), me))
                else {
                    return (
                        404,
                        json!({"detail": "No Conversation matches the given query."}),
                    );
                };
                let id = state.id();
                state.calls.insert(id, idx);
                let caller = state.user(me);
                let call_type = req.body["call_type"].as_str().unwrap_or("voice").to_owned();
                let conversation = &mut state.conversations[idx];
                let seq = conversation.events.len() + 1;
                let frame = json!({"type": Kind::CallIncoming.name(), "call_id": id,
                                   "caller": caller, "call_type": call_type, "seq": seq});
                conversation.publish(self.fault, frame, None);
                (
                    201,
                    json!({"id": id, "state": "ringing", "call_type": call_type}),
                )
            }
            ("POST", ["api", "chat", "calls", id, "end"], Some(me)) => {
                let Some((id, idx)) = id
                    .parse::<i64>()
                    .ok()
                    .and_then(|id| state.calls.get(&id).map(|idx| (id, *idx)))
                else {
                    return (404, json!({"detail": "No Call matches the given query."}));
                };
                let ended_by = state.user(me);
                let conversation = &mut state.conversations[idx];
                let seq = conversation.events.len() + 1;
                let frame = json!({"type": Kind::CallEnded.name(), "call_id": id,
                                   "ended_by": ended_by, "duration": 0, "seq": seq});
                conversation.publish(self.fault, frame, None);
                (200, json!({"status": "ended", "duration": 0}))
            }
            ("POST", ["api", "chat", "contacts"], Some(me)) => {
                let Some(other) = req.body["contact_id"].as_i64() else {
                    return (400, json!(["contact_id required."]));
                };
                if state.contacts.iter().any(|c| c.1 == me && c.2 == other) {
                    return (400, json!(["Contact already exists."]));
                }
                let id = state.id();
                let blocked = req.body["is_blocked"].as_bool().unwrap_or(false);
                state.contacts.push((id, me, other, blocked));
                (201, state.contact_json((id, me, other, blocked)))
            }
            (method, ["api", "chat", "contacts", id, rest @ ..], Some(me)) => {
                let Some(pos) = id
                    .parse::<i64>()
                    .ok()
                    .and_then(|id| state.contacts.iter().position(|c| c.0 == id && c.1 == me))
                else {
                    return (
                        404,
                        json!({"detail": "No Contact matches the given query."}),
                    );
                };
                match (method, rest) {
                    ("DELETE", []) => {
                        state.contacts.remove(pos);
                        (204, Value::Null)
                    }
                    ("PATCH", []) => {
                        if let Some(blocked) = req.body["is_blocked"].as_bool() {
                            state.contacts[pos].3 = blocked;
                        }
                        (200, state.contact_json(state.contacts[pos]))
                    }
                    ("POST", ["block"]) => {
                        let blocked = !state.contacts[pos].3;
                        state.contacts[pos].3 = blocked;
                        let status = if blocked { "blocked" } else { "unblocked" };
                        (200, json!({ "status": status }))
                    }
                    _ => (405, json!({"detail": "Method not allowed."})),
                }
            }
            ("POST", ["api", "chat", "conversations", "create-direct"], Some(me)) => {
                let Some(other) = req.body["user_id"]
                    .as_i64()
                    .filter(|id| state.users.iter().any(|u| u.id == *id))
                else {
                    return (404, json!({"error": "User not found."}));
                };
                if self.fault != Fault::IgnoreBlock && state.blocks(other, me) {
                    return (403, json!({"detail": BLOCKED}));
                }
                let mut pair = vec![me, other];
                pair.sort_unstable();
                if let Some(c) = state.conversations.iter().find(|c| c.members == pair) {
                    return (200, state.conversation_json(c));
                }
                let id = state.id();
                state.conversations.push(Conversation {
                    id,
                    members: pair,
                    ..Conversation::default()
                });
                let c = state.conversations.last().expect("just pushed");
                (201, state.conversation_json(c))
            }
            (method, ["api", "chat", "conversations", id, "messages"], Some(me)) => {
                let Some(idx) = id.parse().ok().and_then(|id| state.find(id)) else {
                    return (404, json!({"detail": "Not found."}));
                };
                if !state.conversations[idx].members.contains(&me) {
                    return (
                        403,
                        json!({"detail": "You are not a member of this conversation."}),
                    );
                }
                match method {
                    "GET" => {
                        let list = state.conversations[idx]
                            .messages
                            .iter()
                            .rev()
                            .cloned()
                            .collect();
                        (200, Value::Array(list))
                    }
                    "POST" if self.blocked_in(&state, idx, me) => (403, json!({"detail": BLOCKED})),
                    "POST" if is_multipart(req) => {
                        let Some((fields, files)) = multipart_parts(req) else {
                            return (400, json!({"detail": "Multipart form parse error"}));
                        };
                        let content = fields.get("content").cloned().unwrap_or_default();
                        let client_id = fields.get("client_id").map(String::as_str);
                        let mut attachments = Vec::new();
                        for (name, mime, bytes) in files {
                            let id = state.id();
                            attachments.push(json!({
                                "id": id, "file": format!("/media/{id}"), "file_name": name,
                                "file_size": bytes.len(), "mime_type": mime,
                                "download_url": format!("/api/chat/attachments/{id}/download/"),
                            }));
                            state.files.insert(id, (idx, bytes));
                        }
                        state.attachments = attachments;
                        match state.post(self.fault, idx, me, &content, client_id, None) {
                            Posted::New(message) => (201, message),
                            Posted::Retry(frame) => (200, frame["data"].clone()),
                        }
                    }
                    "POST" => {
                        let content = req.body["content"].as_str().unwrap_or_default();
                        if content.trim().is_empty() {
                            return (400, json!({"content": ["This field may not be blank."]}));
                        }
                        let client_id = req.body["client_id"].as_str();
                        match state.post(self.fault, idx, me, content, client_id, None) {
                            Posted::New(message) => (201, message),
                            Posted::Retry(frame) => (200, frame["data"].clone()),
                        }
                    }
                    _ => (405, json!({"detail": "Method not allowed."})),
                }
            }
            ("POST", ["api", "chat", "conversations"], Some(me)) => {
                let mut members = vec![me];
                members.extend(
                    req.body["member_ids"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_i64),
                );
                let id = state.id();
                state.conversations.push(Conversation {
                    id,
                    members,
                    title: req.body["title"].as_str().unwrap_or_default().into(),
                    admins: vec![me],
                    ..Conversation::default()
                });
                let c = state.conversations.last().expect("just pushed");
                (201, state.conversation_json(c))
            }
            (method, ["api", "chat", "conversations", id], Some(me)) => {
                let Some(idx) = state.member_of(id, me) else {
                    return (
                        404,
                        json!({"detail": "No Conversation matches the given query."}),
                    );
                };
                if method == "GET" {
                    return (200, state.conversation_json(&state.conversations[idx]));
                }
                if !state.conversations[idx].admins.contains(&me)
                    && self.fault != Fault::NoAdminCheck
                {
                    return (
                        403,
                        json!({"detail": "Only admins can change this conversation."}),
                    );
                }
                let conversation = &mut state.conversations[idx];
                let seq = conversation.events.len() + 1;
                match method {
                    "PATCH" | "PUT" => {
                        if let Some(title) = req.body["title"].as_str() {
                            conversation.title = title.into();
                        }
                        let frame = json!({"type": "conversation.updated", "conversation": conversation.id,
                                           "title": conversation.title, "seq": seq});
                        conversation.publish(self.fault, frame, None);
                        (200, state.conversation_json(&state.conversations[idx]))
                    }
                    "DELETE" => {
                        let frame = json!({"type": "conversation.deleted", "conversation": conversation.id, "seq": seq});
                        conversation.publish(self.fault, frame, None);
                        conversation.deleted = true;
                        conversation.sockets.clear();
                        (204, Value::Null)
                    }
                    _ => (405, json!({"detail": "Method not allowed."})),
                }
            }
            (method, ["api", "chat", "conversations", id, "messages", mid, "pin"], Some(me)) => {
                let message = mid.parse::<i64>().ok();
                let Some(idx) = state.member_of(id, me).filter(|idx| {
                    state.conversations[*idx]
                        .messages
                        .iter()
                        .any(|m| m["id"].as_i64() == message)
                }) else {
                    return (
                        404,
                        json!({"detail": "No Message matches the given query."}),
                    );
                };
                if !state.conversations[idx].admins.contains(&me)
                    && self.fault != Fault::NoAdminCheck
                {
                    return (403, json!({"detail": "Only admins can pin messages."}));
                }
                let message = message.unwrap_or_default();
                let body = json!({"id": message, "message": {"id": message}, "pinned_by": state.user(me),
                                  "pinned_at": "2026-01-01T00:00:00Z"});
                let conversation = &mut state.conversations[idx];
                let pinned = conversation.pins.contains(&message);
                let seq = conversation.events.len() + 1;
                match (method, pinned) {
                    ("POST", true) => (200, body),
                    ("POST", false) => {
                        conversation.pins.push(message);
                        let frame =
                            json!({"type": "message.pinned", "message_id": message, "seq": seq});
                        conversation.publish(self.fault, frame, None);
                        (201, body)
                    }
                    ("DELETE", true) => {
                        conversation.pins.retain(|p| *p != message);
                        let frame =
                            json!({"type": "message.unpinned", "message_id": message, "seq": seq});
                        conversation.publish(self.fault, frame, None);
                        (204, Value::Null)
                    }
                    ("DELETE", false) => (404, json!({"detail": "This message is not pinned."})),
                    _ => (405, json!({"detail": "Method not allowed."})),
                }
            }
            (
                "POST",
                ["api", "chat", "conversations", id, "messages", mid, "forward"],
                Some(me),
            ) => {
                let source = state.member_of(id, me).and_then(|idx| {
                    state.conversations[idx]
                        .messages
                        .iter()
                        .find(|m| m["id"].as_i64() == mid.parse().ok())
                        .cloned()
                });
                let Some(source) = source else {
                    return (
                        404,
                        json!({"detail": "No Message matches the given query."}),
                    );
                };
                let target = req.body["conversation_id"].as_i64().unwrap_or_default();
                let Some(to) = state.member_of(&target.to_string(), me) else {
                    return (404, json!({"detail": "Conversation not found."}));
                };
                let content = source["content"].as_str().unwrap_or_default();
                let client_id = req.body["client_id"]
                    .as_str()
                    .filter(|_| self.fault != Fault::ForwardTwice);
                match state.post(self.fault, to, me, content, client_id, None) {
                    Posted::New(mut message) => {
                        message["forwarded_from"] = source["id"].clone();
                        if let Some(stored) = state.conversations[to].messages.last_mut() {
                            stored["forwarded_from"] = source["id"].clone();
                        }
                        (201, message)
                    }
                    Posted::Retry(frame) => (200, frame["data"].clone()),
                }
            }
            _ => (404, json!({"detail": "Not found."})),
        }
    }

    /// The handshake decision: the user and conversation, or a refusal.
    fn admit(&self, req: &Request) -> Result<(i64, usize), (u16, &'static str)> {
        let state = self.lock();
        let conversation = [CONVERSATIONS, CHAT]
            .iter()
            .find_map(|prefix| req.path.strip_prefix(prefix))
            .and_then(|rest| rest.trim_end_matches('/').parse().ok());
        let user = req
            .query
            .get("token")
            .and_then(|t| state.tokens.get(t))
            .filter(|(_, access)| *access)
            .map(|(id, _)| *id);
        let idx = conversation
            .and_then(|id| state.find(id))
            .ok_or((404, "No such conversation."))?;
        if self.fault == Fault::AcceptAnyone {
            return Ok((user.unwrap_or(0), idx));
        }
        let user = user.ok_or((401, "Token missing or not valid."))?;
        if !state.conversations[idx].members.contains(&user) {
            return Err((403, "You are not a member of this conversation."));
        }
        Ok((user, idx))
    }

    /// One inbound frame from socket `socket` of `user`.
    fn on_frame(
        &self,
        idx: usize,
        user: i64,
        socket: i64,
        tx: &mpsc::UnboundedSender<String>,
        frame: &Value,
    ) {
        let mut state = self.lock();
        let reply = |v: Value| {
            let _ = tx.send(v.to_string());
        };
        let message_id = frame["message_id"].as_i64();
        let position = message_id.and_then(|id| {
            state.conversations[idx]
                .messages
                .iter()
                .position(|m| m["id"] == id)
        });
        let kind = Kind::of(frame);
        match kind {
            Some(Kind::Ping) => reply(frames::pong()),
            Some(Kind::MessageSend) => {
                let content = frame["content"].as_str().unwrap_or_default();
                if content.trim().is_empty() {
                    return reply(frames::error_frame("invalid", "content may not be blank"));
                }
                if self.blocked_in(&state, idx, user) {
                    let mut error = frames::error_frame("forbidden", BLOCKED);
                    error["client_id"] = frame["client_id"].clone();
                    return reply(error);
                }
                if let Posted::Retry(original) = state.post(
                    self.fault,
                    idx,
                    user,
                    content,
                    frame["client_id"].as_str(),
                    Some(socket),
                ) {
                    reply(original);
                }
            }
            Some(Kind::CallAnswer) => {
                let call_id = frame["call_id"].as_i64().unwrap_or_default();
                if state.calls.get(&call_id) != Some(&idx) {
                    return reply(frames::error_frame("not_found", "no such call"));
                }
                let answerer = state.user(user);
                let conversation = &mut state.conversations[idx];
                let seq = conversation.events.len() + 1;
                let out = json!({"type": Kind::CallAnswered.name(), "call_id": call_id,
                                 "answerer": answerer, "seq": seq});
                conversation.publish(self.fault, out, None);
            }
            Some(kind @ (Kind::WebrtcOffer | Kind::WebrtcAnswer)) => {
                let key = if kind == Kind::WebrtcOffer {
                    "offer"
                } else {
                    "answer"
                };
                let out = json!({"type": kind.name(), "call_id": frame["call_id"],
                                 key: frame[key], "sender_id": user});
                for s in state.conversations[idx]
                    .sockets
                    .iter()
                    .filter(|s| s.user != user || self.fault == Fault::WebrtcEchoed)
                {
                    let _ = s.tx.send(out.to_string());
                }
            }
            Some(Kind::Typing) => {
                let user_json = state.user(user);
                let username = user_json["username"].as_str().unwrap_or_default();
                let is_typing = frame["is_typing"].as_bool().unwrap_or(true);
                let out = frames::typing_event(user as u64, username, is_typing);
                for s in state.conversations[idx]
                    .sockets
                    .iter()
                    .filter(|s| s.user != user)
                {
                    let _ = s.tx.send(out.to_string());
                }
            }
            Some(Kind::MessageEdit | Kind::MessageDelete) => {
                let Some(pos) = position else {
                    return reply(frames::error_frame("not_found", "no such message"));
                };
                let conversation = &mut state.conversations[idx];
                if conversation.messages[pos]["sender"]["id"] != user {
                    return reply(frames::error_frame("forbidden", "not your message"));
                }
                let seq = conversation.events.len() as u64 + 1;
                let out = if kind == Some(Kind::MessageEdit) {
                    conversation.messages[pos]["content"] = frame["content"].clone();
                    conversation.messages[pos]["edited_at"] = json!("2025-01-01T00:00:01Z");
                    frames::message_edited(conversation.messages[pos].clone(), seq)
                } else {
                    conversation.messages[pos]["content"] = json!("");
                    conversation.messages[pos]["is_deleted"] = json!(true);
                    frames::message_deleted(message_id.unwrap_or_default() as u64, seq)
                };
                conversation.publish(self.fault, out, None);
            }
            Some(Kind::MessageRead) => {
                if position.is_none() {
                    return reply(frames::error_frame("not_found", "no such message"));
                }
                let conversation = &mut state.conversations[idx];
                let seq = conversation.events.len() as u64 + 1;
                let message_id = message_id.unwrap_or_default() as u64;
                let out = frames::message_read(message_id, user as u64, seq);
                conversation.publish(self.fault, out, None);
            }
            Some(Kind::Sync) => state.conversations[idx].replay(
                self.fault,
                frame["since"].as_i64().unwrap_or(0),
                tx,
            ),
            _ => reply(frames::error_frame("unknown_type", "unknown frame type")),
        }
    }
}

enum Posted {
    New(Value),
    /// A retried client id: the original `message.new` frame.
    Retry(Value),
}

impl State {
    fn id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }

    fn blocks(&self, owner: i64, user: i64) -> bool {
        self.contacts
            .iter()
            .any(|c| c.1 == owner && c.2 == user && c.3)
    }

    fn contact_json(&self, (id, _, user, blocked): (i64, i64, i64, bool)) -> Value {
        json!({
            "id": id, "contact": self.user(user), "nickname": "", "is_blocked": blocked,
            "is_favorite": false, "added_at": "2025-01-01T00:00:00Z",
        })
    }

    fn find(&self, conversation: i64) -> Option<usize> {
        self.conversations
            .iter()
            .position(|c| c.id == conversation && !c.deleted)
    }

    /// A conversation `me` is in, by its id in the path.
    fn member_of(&self, id: &str, me: i64) -> Option<usize> {
        id.parse()
            .ok()
            .and_then(|id| self.find(id))
            .filter(|idx| self.conversations[*idx].members.contains(&me))
    }

    fn user(&self, id: i64) -> Value {
        let name = self
            .users
            .iter()
            .find(|u| u.id == id)
            .map_or("", |u| u.username.as_str());
        json!({"id": id, "username": name})
    }

    /// The contract's 22 profile keys; only `status_message` and
    /// `settings.theme` are ever written.
    fn profile(&self, id: i64) -> Value {
        let user = self.users.iter().find(|u| u.id == id);
        let avatar = self
            .avatars
            .get(&id)
            .map(|name| format!("http://{}/media/{name}", self.host));
        json!({
            "id": id, "username": user.map_or("", |u| u.username.as_str()),
            "email": "", "display_name": "", "phone_number": null, "avatar": avatar,
            "avatar_url": avatar,
            "status_message": user.map_or("", |u| u.status_message.as_str()),
            "bio": "", "date_of_birth": null, "country": "", "city": "", "website": "",
            "show_phone_number": false, "show_last_seen": true, "show_profile_photo": true,
            "allow_calls": true, "allow_group_invite": true, "is_online": true,
            "last_seen_at": null, "date_joined": "2026-01-01T00:00:00Z",
            "settings": self.settings(id),
        })
    }

    /// The 16-key settings object, in the contract's order.
    fn settings(&self, id: i64) -> Value {
        let theme = self
            .users
            .iter()
            .find(|u| u.id == id)
            .map_or("light", |u| u.theme.as_str());
        json!({
            "id": id, "enable_notifications": true, "notification_sound": true,
            "message_preview": true, "enter_to_send": true, "auto_download_photos": true,
            "auto_download_videos": false, "auto_download_files": false,
            "two_factor_enabled": false, "show_typing_indicator": true,
            "show_read_receipts": true, "theme": theme, "font_size": "medium",
            "language": "en", "created_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:00Z",
        })
    }

    fn session(&mut self, id: i64) -> Value {
        let n = self.id();
        let (access, refresh) = (format!("acc-{id}-{n}"), format!("ref-{id}-{n}"));
        self.tokens.insert(access.clone(), (id, true));
        self.tokens.insert(refresh.clone(), (id, false));
        json!({"user": self.user(id), "access": access, "refresh": refresh})
    }

    fn conversation_json(&self, c: &Conversation) -> Value {
        let members: Vec<Value> = c
            .members
            .iter()
            .map(|m| json!({"user": self.user(*m)}))
            .collect();
        let kind = if c.admins.is_empty() {
            "direct"
        } else {
            "group"
        };
        json!({"id": c.id, "title": c.title, "conversation_type": kind, "members": members,
               "pinned_message_ids": c.pins})
    }

    /// Stores and fans out a message, or finds the one with this client id.
    fn post(
        &mut self,
        fault: Fault,
        idx: usize,
        user: i64,
        content: &str,
        client_id: Option<&str>,
        socket: Option<i64>,
    ) -> Posted {
        let key = client_id.map(|c| (user, c.to_owned()));
        if let Some(pos) = key
            .as_ref()
            .and_then(|k| self.conversations[idx].client_ids.get(k))
        {
            self.attachments.clear();
            let message = self.conversations[idx].messages[*pos].clone();
            let seq = message["seq"].as_u64().unwrap_or_default();
            return Posted::Retry(frames::message_new(message, seq, client_id));
        }
        let attachments = std::mem::take(&mut self.attachments);
        let id = self.id();
        let sender = self.user(user);
        let conversation = &mut self.conversations[idx];
        let seq = conversation.events.len() as i64 + 1;
        let message = json!({
            "id": id, "conversation": conversation.id, "sender": sender, "message_type": "text",
            "content": content, "created_at": "2025-01-01T00:00:00Z", "edited_at": null,
            "is_deleted": false, "seq": seq, "client_id": client_id, "forwarded_from": null,
            "attachments": attachments,
        });
        conversation.messages.push(message.clone());
        if let Some(key) = key {
            conversation
                .client_ids
                .insert(key, conversation.messages.len() - 1);
        }
        let mut live = message.clone();
        if fault == Fault::AttachmentsNotLive {
            live["attachments"] = json!([]);
        }
        let frame = frames::message_new(live, seq as u64, client_id);
        conversation.publish(fault, frame, socket);
        let (conv_id, members) = (conversation.id, conversation.members.clone());
        for member in members.into_iter().filter(|m| *m != user) {
            let online = self
                .conversations
                .iter()
                .any(|c| c.sockets.iter().any(|s| s.user == member));
            if !online {
                let id = self.id();
                self.notifications.push(json!({
                    "id": id, "user": member, "notification_type": "message",
                    "title": "", "message": content, "is_read": false,
                    "related_conversation": conv_id, "related_message": message["id"],
                    "related_call": null, "related_user": user,
                }));
            }
        }
        Posted::New(message)
    }
}

impl Conversation {
    /// Logs a seq-carrying frame and sends it to every socket; `sender` is
    /// the socket a `message.new` came from (the one `DropEcho` skips).
    fn publish(&mut self, fault: Fault, frame: Value, sender: Option<i64>) {
        let text = frame.to_string();
        let is_new = Kind::MessageNew.is(&frame);
        self.events.push(frame);
        for s in &self.sockets {
            if is_new && fault == Fault::DropEcho && Some(s.id) == sender {
                continue;
            }
            let _ = s.tx.send(text.clone());
            if is_new && fault == Fault::Duplicate {
                let _ = s.tx.send(text.clone());
            }
        }
    }

    fn replay(&self, fault: Fault, since: i64, tx: &mpsc::UnboundedSender<String>) {
        let skip = usize::from(fault == Fault::LossyResume);
        let missed = self.events.iter().skip(usize::try_from(since).unwrap_or(0));
        for frame in missed.skip(skip) {
            let _ = tx.send(frame.to_string());
        }
        let last = (self.events.len() as i64).max(since);
        let _ = tx.send(frames::sync_done(last as u64).to_string());
    }
}

async fn handle(server: Arc<Server>, mut stream: TcpStream) {
    let Some(req) = read_request(&mut stream).await else {
        return;
    };
    let upgrade = req
        .headers
        .get("upgrade")
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if upgrade {
        return websocket(server, stream, req).await;
    }
    if let Some(download) = server.download(&req) {
        return respond_bytes(&mut stream, download).await;
    }
    let (status, body) = server.route(&req);
    respond(&mut stream, status, &body).await;
}

/// A binary answer: status, extra headers, bytes.
type Download = (u16, Vec<(&'static str, String)>, Vec<u8>);

impl Server {
    /// `GET /api/chat/attachments/{id}/download/` for a member, with one
    /// `Range: bytes=a-b`; `None` for every other path.
    fn download(&self, req: &Request) -> Option<Download> {
        let segments: Vec<&str> = req.path.trim_matches('/').split('/').collect();
        if let ["media", name] = segments.as_slice() {
            let state = self.lock();
            return Some(match state.media.get(*name) {
                Some(bytes) if self.fault != Fault::AvatarNotServed => {
                    (200, vec![("ETag", format!("\"{name}\""))], bytes.clone())
                }
                _ => (404, Vec::new(), b"{\"detail\": \"Not found.\"}".to_vec()),
            });
        }
        let ["api", "chat", "attachments", id, "download"] = segments.as_slice() else {
            return None;
        };
        let state = self.lock();
        let user = req
            .headers
            .get("authorization")
            .and_then(|h| h.strip_prefix("Bearer "))
            .and_then(|t| state.tokens.get(t))
            .map(|(id, _)| *id);
        let found = id.parse::<i64>().ok().and_then(|id| state.files.get(&id));
        let Some((idx, bytes)) = found.filter(|(idx, _)| {
            user.is_some_and(|u| state.conversations[*idx].members.contains(&u))
        }) else {
            return Some((
                404,
                Vec::new(),
                b"{\"detail\": \"File not found.\"}".to_vec(),
            ));
        };
        let _ = idx;
        let range = req
            .headers
            .get("range")
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.split_once('-'))
            .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)))
            .filter(|(a, b)| a <= b && *b < bytes.len());
        Some(match range {
            Some((a, b)) => (
                206,
                vec![("Content-Range", format!("bytes {a}-{b}/{}", bytes.len()))],
                bytes[a..=b].to_vec(),
            ),
            None => (200, Vec::new(), bytes.clone()),
        })
    }
}

fn is_multipart(req: &Request) -> bool {
    req.headers
        .get("content-type")
        .is_some_and(|v| v.starts_with("multipart/form-data"))
}

/// The text fields and files (name, type, bytes) of a multipart body.
#[allow(clippy::type_complexity)]
fn multipart_parts(
    req: &Request,
) -> Option<(HashMap<String, String>, Vec<(String, String, Vec<u8>)>)> {
    let boundary = req.headers.get("content-type")?.split("boundary=").nth(1)?;
    let delimiter = format!("--{boundary}");
    let raw = &req.raw;
    let mut starts = Vec::new();
    let mut at = 0;
    while let Some(pos) = find(&raw[at..], delimiter.as_bytes()) {
        starts.push(at + pos);
        at += pos + delimiter.len();
    }
    let mut fields = HashMap::new();
    let mut files = Vec::new();
    for pair in starts.windows(2) {
        // Skip the delimiter and its CRLF; drop the CRLF before the next one.
        let part = raw.get(pair[0] + delimiter.len() + 2..pair[1].checked_sub(2)?)?;
        let head_end = find(part, b"\r\n\r\n")?;
        let head = std::str::from_utf8(&part[..head_end]).ok()?;
        let data = part[head_end + 4..].to_vec();
        let quoted = |key: &str| {
            head.split(&format!("{key}=\""))
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .map(str::to_owned)
        };
        let name = quoted("name")?;
        let mime = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Type: "))
            .unwrap_or("application/octet-stream")
            .to_owned();
        match quoted("filename") {
            Some(file_name) => files.push((file_name, mime, data)),
            _ => {
                fields.insert(name, String::from_utf8(data).ok()?);
            }
        }
    }
    Some((fields, files))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

async fn respond_bytes(stream: &mut TcpStream, (status, headers, body): Download) {
    let mut head = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(&body).await;
    let _ = stream.shutdown().await;
}

async fn websocket(server: Arc<Server>, mut stream: TcpStream, req: Request) {
    let (user, idx) = match server.admit(&req) {
        Ok(admitted) => admitted,
        Err((status, detail)) => {
            return respond(&mut stream, status, &json!({"detail": detail})).await
        }
    };
    let key = req
        .headers
        .get("sec-websocket-key")
        .cloned()
        .unwrap_or_default();
    let accept = derive_accept_key(key.as_bytes());
    let head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let ws = WebSocketStream::from_raw_socket(stream, Role::Server, None).await;
    let (mut sink, mut source) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let socket = {
        // Subscribe and replay under one lock: nothing published in between
        // can be lost or doubled at the seam.
        let mut state = server.lock();
        let socket = state.id();
        let conversation = &mut state.conversations[idx];
        conversation.sockets.push(Subscriber {
            id: socket,
            user,
            tx: tx.clone(),
        });
        if let Some(since) = req.query.get("since").and_then(|s| s.parse().ok()) {
            conversation.replay(server.fault, since, &tx);
        }
        socket
    };
    let writer = tokio::spawn(async move {
        while let Some(text) = rx.recv().await {
            if sink.send(Message::text(text)).await.is_err() {
                break;
            }
        }
    });
    while let Some(Ok(message)) = source.next().await {
        match message {
            Message::Text(text) => {
                let frame: Value = serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
                server.on_frame(idx, user, socket, &tx, &frame);
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    server.lock().conversations[idx]
        .sockets
        .retain(|s| s.id != socket);
    writer.abort();
}

async fn read_request(stream: &mut TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_end]).ok()?;
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_owned();
    let target = request_line.next()?;
    let headers: HashMap<String, String> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let query = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    Some(Request {
        method,
        path: path.to_owned(),
        query,
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        raw: body,
    })
}

async fn respond(stream: &mut TcpStream, status: u16, body: &Value) {
    // A 204 has no body.
    let text = if status == 204 {
        String::new()
    } else {
        body.to_string()
    };
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        text.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(text.as_bytes()).await;
    let _ = stream.shutdown().await;
}
