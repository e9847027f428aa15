//! Typed calls of the chat resources (conversations, messages, contacts,
//! pins, forwards) and their paths.

use reqwest::Method;
use serde_json::{json, Value};

use super::{Api, Resp, RestError};

impl Api {
    // ------------------------------------------------------------ conversations

    /// `GET /api/chat/conversations/`.
    pub async fn conversations(&self) -> Result<Resp, RestError> {
        self.try_get(CONVERSATIONS).await
    }

    /// `POST .../create-direct/`: 201 new, or 200 the existing one.
    pub async fn create_direct(&self, user_id: u64) -> Result<Resp, RestError> {
        let path = format!("{CONVERSATIONS}create-direct/");
        self.try_post(&path, &json!({"user_id": user_id})).await
    }

    /// `POST /api/chat/conversations/` of a group.
    pub async fn create_group(&self, title: &str, member_ids: &[u64]) -> Result<Resp, RestError> {
        let body = json!({"title": title, "conversation_type": "group", "member_ids": member_ids});
        self.try_post(CONVERSATIONS, &body).await
    }

    /// `GET /api/chat/conversations/<id>/`.
    pub async fn conversation(&self, conv: u64) -> Result<Resp, RestError> {
        self.try_get(&conversation_path(conv)).await
    }

    /// `POST .../<id>/add-member/`.
    pub async fn add_member(&self, conv: u64, user_id: u64) -> Result<Resp, RestError> {
        let path = format!("{}add-member/", conversation_path(conv));
        self.try_post(&path, &json!({"user_id": user_id})).await
    }

    /// `POST .../<id>/leave/`: any member leaves a group.
    pub async fn leave(&self, conv: u64) -> Result<Resp, RestError> {
        let path = format!("{}leave/", conversation_path(conv));
        self.try_request(Method::POST, &path, None).await
    }

    /// `PATCH /api/chat/conversations/<id>/` (admins): `title`,
    /// `description`, `is_public`.
    pub async fn update_conversation(&self, conv: u64, fields: &Value) -> Result<Resp, RestError> {
        self.try_request(Method::PATCH, &conversation_path(conv), Some(fields))
            .await
    }

    /// `DELETE /api/chat/conversations/<id>/` (admins): 204.
    pub async fn delete_conversation(&self, conv: u64) -> Result<Resp, RestError> {
        self.try_request(Method::DELETE, &conversation_path(conv), None)
            .await
    }

    /// `POST .../<id>/remove-member/` (admins).
    pub async fn remove_member(&self, conv: u64, user_id: u64) -> Result<Resp, RestError> {
        let path = format!("{}remove-member/", conversation_path(conv));
        self.try_post(&path, &json!({"user_id": user_id})).await
    }

    /// `POST /api/chat/conversations/` with any body (description,
    /// is_public, ...).
    pub async fn create_group_with(&self, body: &Value) -> Result<Resp, RestError> {
        self.try_post(CONVERSATIONS, body).await
    }

    // ------------------------------------------------------------ messages

    /// `GET .../messages/?<query>` (`query` may be empty): newest first.
    pub async fn messages(&self, conv: u64, query: &str) -> Result<Resp, RestError> {
        let mut path = messages_path(conv);
        if !query.is_empty() {
            path.push('?');
            path.push_str(query);
        }
        self.try_get(&path).await
    }

    /// `POST .../messages/`; with a `client_id`, a retry answers the original.
    pub async fn send(
        &self,
        conv: u64,
        content: &str,
        client_id: Option<&str>,
    ) -> Result<Resp, RestError> {
        let mut body = json!({"content": content});
        if let Some(client_id) = client_id {
            body["client_id"] = json!(client_id);
        }
        self.try_post(&messages_path(conv), &body).await
    }

    /// `PATCH .../messages/<id>/edit/`.
    pub async fn edit(&self, conv: u64, message: u64, content: &str) -> Result<Resp, RestError> {
        let body = json!({"content": content});
        let path = message_path(conv, message, "edit/");
        self.try_request(Method::PATCH, &path, Some(&body)).await
    }

    /// `DELETE .../messages/<id>/`: a soft delete.
    pub async fn delete_message(&self, conv: u64, message: u64) -> Result<Resp, RestError> {
        let path = message_path(conv, message, "");
        self.try_request(Method::DELETE, &path, None).await
    }

    /// `POST .../messages/<id>/react/`: toggles `emoji`.
    pub async fn react(&self, conv: u64, message: u64, emoji: &str) -> Result<Resp, RestError> {
        let path = message_path(conv, message, "react/");
        self.try_post(&path, &json!({"emoji": emoji})).await
    }

    /// `POST .../messages/<id>/read/`.
    pub async fn mark_read(&self, conv: u64, message: u64) -> Result<Resp, RestError> {
        let path = message_path(conv, message, "read/");
        self.try_post(&path, &json!({})).await
    }

    // ------------------------------------------------------------ contacts

    /// `GET /api/chat/contacts/`: the caller's contacts, a plain array.
    pub async fn contacts(&self) -> Result<Resp, RestError> {
        self.try_get(CONTACTS).await
    }

    /// `POST /api/chat/contacts/` with `contact_id` and any other fields
    /// (`nickname`, `is_blocked`, `is_favorite`).
    pub async fn add_contact(&self, user_id: u64, fields: &Value) -> Result<Resp, RestError> {
        let mut body = fields.clone();
        if let Value::Object(map) = &mut body {
            map.insert("contact_id".into(), json!(user_id));
        }
        self.try_post(CONTACTS, &body).await
    }

    /// `GET /api/chat/contacts/<id>/`.
    pub async fn contact(&self, id: u64) -> Result<Resp, RestError> {
        self.try_get(&contact_path(id, "")).await
    }

    /// `PATCH /api/chat/contacts/<id>/` (`PUT` is partial too).
    pub async fn update_contact(&self, id: u64, fields: &Value) -> Result<Resp, RestError> {
        self.try_request(Method::PATCH, &contact_path(id, ""), Some(fields))
            .await
    }

    /// `DELETE /api/chat/contacts/<id>/`: 204.
    pub async fn delete_contact(&self, id: u64) -> Result<Resp, RestError> {
        self.try_request(Method::DELETE, &contact_path(id, ""), None)
            .await
    }

    /// `POST /api/chat/contacts/<id>/block/`: toggles the block.
    pub async fn toggle_block(&self, id: u64) -> Result<Resp, RestError> {
        self.try_post(&contact_path(id, "block/"), &json!({})).await
    }

    /// `POST /api/chat/contacts/<id>/favorite/`: toggles the favourite.
    pub async fn toggle_favorite(&self, id: u64) -> Result<Resp, RestError> {
        self.try_post(&contact_path(id, "favorite/"), &json!({}))
            .await
    }

    /// `POST .../messages/<id>/pin/` (admins): 201 new, 200 pinned already.
    pub async fn pin(&self, conv: u64, message: u64) -> Result<Resp, RestError> {
        let path = message_path(conv, message, "pin/");
        self.try_request(Method::POST, &path, None).await
    }

    /// `DELETE .../messages/<id>/pin/` (admins): 204.
    pub async fn unpin(&self, conv: u64, message: u64) -> Result<Resp, RestError> {
        let path = message_path(conv, message, "pin/");
        self.try_request(Method::DELETE, &path, None).await
    }

    /// `POST .../messages/<id>/forward/` into `to_conv`; with a
    /// `client_id`, a retry answers the original.
    pub async fn forward(
        &self,
        conv: u64,
        message: u64,
        to_conv: u64,
        client_id: Option<&str>,
    ) -> Result<Resp, RestError> {
        let mut body = json!({"conversation_id": to_conv});
        if let Some(client_id) = client_id {
            body["client_id"] = json!(client_id);
        }
        let path = message_path(conv, message, "forward/");
        self.try_post(&path, &body).await
    }
}

const CONVERSATIONS: &str = "/api/chat/conversations/";
pub const CONTACTS: &str = "/api/chat/contacts/";

/// `/api/chat/conversations/<conv>/`.
pub fn conversation_path(conv: u64) -> String {
    format!("{CONVERSATIONS}{conv}/")
}

/// `/api/chat/contacts/<id>/<action>` (`action` like `"block/"`, or `""`).
pub fn contact_path(id: u64, action: &str) -> String {
    format!("{CONTACTS}{id}/{action}")
}

/// `/api/chat/conversations/<conv>/messages/`.
pub fn messages_path(conv: u64) -> String {
    format!("{CONVERSATIONS}{conv}/messages/")
}

/// `.../messages/<message>/<action>` (`action` like `"edit/"`, or `""`).
pub fn message_path(conv: u64, message: u64, action: &str) -> String {
    format!("{CONVERSATIONS}{conv}/messages/{message}/{action}")
}
