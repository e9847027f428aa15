//! The REST side (contract API.md): a JSON client over reqwest, the paths of
//! the contract's calls, and a logged-in [`User`].
//!
//! Every call answers a raw [`Resp`], since callers check status codes and
//! error bodies; [`User::from_session`] and [`Resp::id`] read the typed
//! parts the callers go on with.

use std::ops::Deref;

use reqwest::Method;
use serde_json::{json, Value};

use crate::socket;

mod chat;
mod multipart;

pub use chat::{contact_path, conversation_path, message_path, messages_path, CONTACTS};
pub use multipart::{multipart, Part};

/// An HTTP answer: the status, the headers and the body (JSON; `Null` when
/// empty; the raw text as a JSON string when it is not JSON).
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    /// False when the body was not JSON (and `body` holds its text).
    json: bool,
}

impl Resp {
    /// Whether the body parsed as JSON (an empty body counts).
    pub fn is_json(&self) -> bool {
        self.json
    }

    /// The body's `id` (a created conversation, message, ...).
    pub fn id(&self) -> Option<u64> {
        self.body.get("id").and_then(Value::as_u64)
    }

    /// `HTTP 400 {"detail": ...}` (cut at 200 characters), for failure reasons.
    pub fn describe(&self) -> String {
        let body = self.body.to_string();
        let cut: String = body.chars().take(200).collect();
        let more = if cut.len() < body.len() { "…" } else { "" };
        format!("HTTP {} {cut}{more}", self.status)
    }
}

/// Why a request got no answer.
#[derive(Debug)]
pub struct RestError {
    /// `POST http://host:port/api/auth/login/`
    pub request: String,
    pub source: reqwest::Error,
}

impl std::fmt::Display for RestError {
    /// reqwest's top-level message ("error sending request") hides the
    /// cause ("connection refused"): show the whole chain.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "request to {} failed: {}", self.request, self.source)?;
        let mut cause = std::error::Error::source(&self.source);
        while let Some(err) = cause {
            write!(f, ": {err}")?;
            cause = err.source();
        }
        Ok(())
    }
}

impl std::error::Error for RestError {}

/// A REST client for one node, optionally authenticated. Cheap to clone
/// (the connection pool is shared).
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    /// `http://host:port`, no trailing slash.
    base: String,
    token: Option<String>,
}

impl Api {
    /// A client without credentials, with its own connection pool whose
    /// requests give up after [`crate::TIMEOUT`].
    pub fn new(base: &str) -> Api {
        let http = reqwest::Client::builder()
            .timeout(crate::TIMEOUT)
            .build()
            .expect("reqwest client");
        Api::with_http(http, base)
    }

    /// A client without credentials whose connections come from
    /// `local` (e.g. `127.0.0.2`, to be another client address to a
    /// server on loopback).
    pub fn from_address(base: &str, local: std::net::IpAddr) -> Api {
        let http = reqwest::Client::builder()
            .timeout(crate::TIMEOUT)
            .local_address(local)
            .build()
            .expect("reqwest client");
        Api::with_http(http, base)
    }

    /// A client without credentials over the caller's reqwest client.
    pub fn with_http(http: reqwest::Client, base: &str) -> Api {
        Api {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token: None,
        }
    }

    /// The same node and pool, sending `Authorization: Bearer <token>`.
    pub fn with_token(&self, token: &str) -> Api {
        Api {
            token: Some(token.to_owned()),
            ..self.clone()
        }
    }

    /// The same node and pool, without credentials.
    pub fn anon(&self) -> Api {
        Api {
            token: None,
            ..self.clone()
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The node's port (80 when the base names none).
    pub fn port(&self) -> u16 {
        self.base
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(80)
    }

    /// One request; an error only when no answer came.
    pub async fn try_request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Resp, RestError> {
        let failed = |source| RestError {
            request: format!("{method} {}{path}", self.base),
            source,
        };
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(failed)?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.map_err(failed)?;
        let (body, json) = if bytes.is_empty() {
            (Value::Null, true)
        } else {
            match serde_json::from_slice(&bytes) {
                Ok(body) => (body, true),
                Err(_) => (
                    Value::String(String::from_utf8_lossy(&bytes).into_owned()),
                    false,
                ),
            }
        };
        Ok(Resp {
            status,
            headers,
            body,
            json,
        })
    }

    /// One request that must be answered with JSON (or nothing); panics
    /// otherwise.
    pub async fn request(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        let resp = self
            .try_request(method.clone(), path, body.as_ref())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            resp.json,
            "{method} {path}: {} body is not JSON: {}",
            resp.status,
            resp.body.as_str().unwrap_or_default()
        );
        resp
    }

    pub async fn try_get(&self, path: &str) -> Result<Resp, RestError> {
        self.try_request(Method::GET, path, None).await
    }

    pub async fn try_post(&self, path: &str, body: &Value) -> Result<Resp, RestError> {
        self.try_request(Method::POST, path, Some(body)).await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.request(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.request(Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Resp {
        self.request(Method::PATCH, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Resp {
        self.request(Method::PUT, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.request(Method::DELETE, path, None).await
    }

    // ------------------------------------------------------------ auth

    /// `POST /api/auth/register/`; a 201 carries tokens like a login.
    pub async fn register(&self, username: &str, password: &str) -> Result<Resp, RestError> {
        let body = json!({"username": username, "password": password, "password2": password});
        self.try_post("/api/auth/register/", &body).await
    }

    /// `POST /api/auth/login/`.
    pub async fn login(&self, username: &str, password: &str) -> Result<Resp, RestError> {
        let body = json!({"username": username, "password": password});
        self.try_post("/api/auth/login/", &body).await
    }

    /// `POST /api/auth/token/refresh/`.
    pub async fn refresh(&self, refresh: &str) -> Result<Resp, RestError> {
        let body = json!({"refresh": refresh});
        self.try_post("/api/auth/token/refresh/", &body).await
    }

    /// `POST /api/auth/phone/request-otp/ {"phone_number"}`: a login code
    /// is sent to the number (and is in the answer with `--dev`).
    pub async fn request_otp(&self, phone_number: &str) -> Result<Resp, RestError> {
        let body = json!({"phone_number": phone_number});
        self.try_post("/api/auth/phone/request-otp/", &body).await
    }

    /// `POST /api/auth/phone/verify-otp/ {"phone_number", "otp"}`: logs in
    /// (or registers) the number's user; the tokens are under `tokens`.
    pub async fn verify_otp(&self, phone_number: &str, otp: &str) -> Result<Resp, RestError> {
        let body = json!({"phone_number": phone_number, "otp": otp});
        self.try_post("/api/auth/phone/verify-otp/", &body).await
    }

    /// `POST /api/auth/google/ {"token"}` with a Google ID token.
    pub async fn google_login(&self, id_token: &str) -> Result<Resp, RestError> {
        let body = json!({"token": id_token});
        self.try_post("/api/auth/google/", &body).await
    }

    /// `POST /api/auth/logout/ {"refresh"}`: revokes that refresh token.
    pub async fn logout(&self, refresh: &str) -> Result<Resp, RestError> {
        let body = json!({"refresh": refresh});
        self.try_post("/api/auth/logout/", &body).await
    }

    /// `POST /api/auth/auth/logout/`: the caller goes offline.
    pub async fn logout_offline(&self) -> Result<Resp, RestError> {
        self.try_post("/api/auth/auth/logout/", &json!({})).await
    }

    /// `POST /api/auth/users/set-online/` (no body).
    pub async fn set_online(&self) -> Result<Resp, RestError> {
        self.try_post("/api/auth/users/set-online/", &json!({}))
            .await
    }

    /// `POST /api/auth/users/set-offline/` (no body).
    pub async fn set_offline(&self) -> Result<Resp, RestError> {
        self.try_post("/api/auth/users/set-offline/", &json!({}))
            .await
    }

    /// `GET /api/auth/profile/me/`.
    pub async fn profile_me(&self) -> Result<Resp, RestError> {
        self.try_get("/api/auth/profile/me/").await
    }

    /// `POST path` with a raw body of `content_type` (multipart uploads,
    /// whole or cut short); the answer as JSON.
    pub async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<Resp, RestError> {
        let failed = |source| RestError {
            request: format!("POST {}{path}", self.base),
            source,
        };
        let mut request = self
            .http
            .post(format!("{}{path}", self.base))
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(failed)?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.map_err(failed)?;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Ok(Resp {
            status,
            headers,
            body,
            json: true,
        })
    }

    /// `POST /api/auth/profile/me/avatar/` (the Flutter client's path; the
    /// contract's is `profile/avatar/`) with `bytes` as the multipart file
    /// `avatar` named `file_name`.
    pub async fn upload_avatar(&self, file_name: &str, bytes: &[u8]) -> Result<Resp, RestError> {
        let (content_type, body) = multipart(&[Part::file("avatar", file_name, bytes)]);
        self.post_raw("/api/auth/profile/me/avatar/", &content_type, body)
            .await
    }

    /// `DELETE /api/auth/profile/me/avatar/`.
    pub async fn delete_avatar(&self) -> Result<Resp, RestError> {
        self.try_request(Method::DELETE, "/api/auth/profile/me/avatar/", None)
            .await
    }

    /// `GET path` as bytes (media files, attachment downloads; with the
    /// token when there is one), sending `headers`: the status,
    /// the answer's headers and its body.
    pub async fn get_bytes(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<(u16, reqwest::header::HeaderMap, Vec<u8>), RestError> {
        let failed = |source| RestError {
            request: format!("GET {path}"),
            source,
        };
        let url = if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        };
        let mut request = self.http.get(url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.map_err(failed)?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.map_err(failed)?;
        Ok((status, headers, bytes.to_vec()))
    }

    /// `GET /api/auth/users/`.
    pub async fn users(&self) -> Result<Resp, RestError> {
        self.try_get("/api/auth/users/").await
    }

    /// `GET /api/chat/users/search/?q=<query>`.
    pub async fn search(&self, query: &str) -> Result<Resp, RestError> {
        let path = format!("/api/chat/users/search/?q={}", socket::encode(query));
        self.try_get(&path).await
    }

    // ------------------------------------------------------------ profile and settings

    /// `PATCH /api/auth/profile/me/` with these fields: 200 with the
    /// profile object, or 400 with every field's errors.
    pub async fn update_profile(&self, fields: &Value) -> Result<Resp, RestError> {
        self.try_request(Method::PATCH, "/api/auth/profile/me/", Some(fields))
            .await
    }

    /// `GET /api/auth/user/`: the caller's user object.
    pub async fn user_me(&self) -> Result<Resp, RestError> {
        self.try_get("/api/auth/user/").await
    }

    /// `PATCH /api/auth/user/`: 200 with the caller's user object.
    pub async fn update_user_me(&self, fields: &Value) -> Result<Resp, RestError> {
        self.try_request(Method::PATCH, "/api/auth/user/", Some(fields))
            .await
    }

    /// `GET /api/auth/profile/<id>/`: the privacy-filtered profile.
    pub async fn public_profile(&self, user_id: u64) -> Result<Resp, RestError> {
        self.try_get(&format!("/api/auth/profile/{user_id}/")).await
    }

    /// `GET /api/auth/users/<id>/`.
    pub async fn user_detail(&self, user_id: u64) -> Result<Resp, RestError> {
        self.try_get(&format!("/api/auth/users/{user_id}/")).await
    }

    /// `PATCH /api/auth/users/<id>/`: yourself only (403 otherwise).
    pub async fn update_user(&self, user_id: u64, fields: &Value) -> Result<Resp, RestError> {
        let path = format!("/api/auth/users/{user_id}/");
        self.try_request(Method::PATCH, &path, Some(fields)).await
    }

    /// `GET /api/auth/settings/` (the first call creates the row).
    pub async fn settings(&self) -> Result<Resp, RestError> {
        self.try_get(SETTINGS).await
    }

    /// `PATCH /api/auth/settings/` with these settings.
    pub async fn update_settings(&self, fields: &Value) -> Result<Resp, RestError> {
        self.try_request(Method::PATCH, SETTINGS, Some(fields))
            .await
    }

    /// `POST /api/auth/settings/reset/`: every setting to its default.
    pub async fn reset_settings(&self) -> Result<Resp, RestError> {
        self.try_request(Method::POST, &format!("{SETTINGS}reset/"), None)
            .await
    }

    // ------------------------------------------------------------ sockets

    /// `ws://.../ws/conversations/<conv>/?token=<this token>[&since=N]`.
    pub fn ws_url(&self, conv: u64, since: Option<u64>) -> String {
        socket::url(
            &socket::ws_base(&self.base),
            socket::CONVERSATIONS,
            conv,
            self.token.as_deref(),
            since,
        )
    }

    /// Opens a socket on `/ws/conversations/<conv>/`.
    pub async fn ws(&self, conv: u64) -> crate::Ws {
        crate::Ws::connect(&self.ws_url(conv, None)).await
    }

    /// Opens a socket that first replays everything after `since`.
    pub async fn ws_since(&self, conv: u64, since: u64) -> crate::Ws {
        crate::Ws::connect(&self.ws_url(conv, Some(since))).await
    }
}

/// A logged-in user: its id, tokens, and an API client with its token.
#[derive(Clone)]
pub struct User {
    pub id: u64,
    pub username: String,
    pub access: String,
    pub refresh: String,
    pub api: Api,
}

impl User {
    /// The user of a login, register or refresh answer
    /// (`{"user": {"id", "username"}, "access", "refresh"}`), acting on
    /// `api`'s node. `Err` names the missing field.
    pub fn from_session(api: &Api, body: &Value) -> Result<User, String> {
        let field = |value: &Value, name: &str| {
            value
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| format!("no {name} in {body}"))
        };
        let access = field(&body["access"], "access token")?;
        Ok(User {
            id: body["user"]["id"]
                .as_u64()
                .ok_or_else(|| format!("no user id in {body}"))?,
            username: field(&body["user"]["username"], "username")?,
            refresh: field(&body["refresh"], "refresh token").unwrap_or_default(),
            api: api.with_token(&access),
            access,
        })
    }
}

impl Deref for User {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

const SETTINGS: &str = "/api/auth/settings/";
