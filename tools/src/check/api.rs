//! The REST side: a thin JSON client and the logged-in users the cases act as.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::report::truncate;

/// One node's REST API.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
}

/// An HTTP answer: status and body (JSON, or the raw text as a JSON string).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    /// `HTTP 400 {"detail": ...}`, for failure reasons.
    pub fn describe(&self) -> String {
        format!(
            "HTTP {} {}",
            self.status,
            truncate(&self.body.to_string(), 200)
        )
    }
}

impl Api {
    pub fn new(http: reqwest::Client, base: &str) -> Self {
        Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Result<Reply, String> {
        self.send(self.http.get(self.url(path)), token).await
    }

    pub async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> Result<Reply, String> {
        self.send(self.http.post(self.url(path)).json(body), token)
            .await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        token: Option<&str>,
    ) -> Result<Reply, String> {
        let request = match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let response = request
            .send()
            .await
            .map_err(|err| format!("request to {} failed: {}", self.base, error_chain(&err)))?;
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .map_err(|err| format!("reading the answer failed: {err}"))?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(Reply { status, body })
    }
}

/// reqwest's top-level message ("error sending request") hides the cause
/// ("connection refused"); the reason line should show both.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A logged-in user and the node it talks to.
pub struct User {
    /// "A" or "B", for failure reasons.
    pub label: &'static str,
    pub username: String,
    pub id: i64,
    pub access: String,
    pub refresh: String,
    pub api: Api,
    /// `ws://host:port` of the node this user's sockets connect to.
    pub ws_base: String,
}

impl User {
    pub async fn get(&self, path: &str) -> Result<Reply, String> {
        self.api.get(path, Some(&self.access)).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Reply, String> {
        self.api.post(path, Some(&self.access), body).await
    }
}

/// `POST /api/auth/register/`; the answer carries tokens like a login.
pub async fn register(api: &Api, username: &str, password: &str) -> Result<Reply, String> {
    let body = json!({ "username": username, "password": password, "password2": password });
    api.post("/api/auth/register/", None, &body).await
}

/// `POST /api/auth/login/` and read the user's id and tokens from the answer.
pub async fn login(
    api: &Api,
    label: &'static str,
    username: &str,
    password: &str,
    ws_base: &str,
) -> Result<User, String> {
    let body = json!({ "username": username, "password": password });
    let reply = api.post("/api/auth/login/", None, &body).await?;
    if reply.status != 200 {
        return Err(format!("login as {username}: {}", reply.describe()));
    }
    let access = non_empty_str(&reply.body["access"]).ok_or_else(|| {
        format!(
            "login as {username}: no access token in {}",
            reply.describe()
        )
    })?;
    let refresh = non_empty_str(&reply.body["refresh"]).unwrap_or_default();
    let id = match reply.body["user"]["id"].as_i64() {
        Some(id) => id,
        // The original's test read the id from the profile; do the same when
        // the login answer lacks it.
        None => {
            let me = api.get("/api/auth/profile/me/", Some(&access)).await?;
            me.body["id"].as_i64().ok_or_else(|| {
                format!(
                    "login as {username}: no user id in the login answer nor in profile/me ({})",
                    me.describe()
                )
            })?
        }
    };
    Ok(User {
        label,
        username: username.to_owned(),
        id,
        access,
        refresh,
        api: api.clone(),
        ws_base: ws_base.to_owned(),
    })
}

fn non_empty_str(value: &Value) -> Option<String> {
    value.as_str().filter(|s| !s.is_empty()).map(str::to_owned)
}

/// Retries `attempt` until it succeeds or `timeout` is spent.
///
/// In cluster mode a write on node A reaches node B a moment later, so reads
/// on B (and writes that refer to what A created) may need a few tries.
pub async fn retry<T, F, Fut>(timeout: Duration, mut attempt: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(err) if Instant::now() >= deadline => return Err(err),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// A list answer: a plain array as in the contract, or a paginated
/// `{"results": [...]}` envelope should the server ever add one.
pub fn list_items(body: &Value) -> Option<&Vec<Value>> {
    body.as_array().or_else(|| body["results"].as_array())
}

/// Ids arrive as numbers; tolerate strings so a mismatch reads as a mismatch.
pub fn as_id(value: &Value) -> Option<i64> {
    value
        .as_i64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
}
