//! The web routes (`api/web.rs`): the index page, the health check and
//! unknown paths.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn index_health_and_unknown_paths() {
    let server = Server::start(&["--dev"]).await;
    let anon = server.anon();
    let index = anon.get("/api/").await;
    assert_eq!(index.status, 200);
    assert_eq!(index.body["message"], "Vatochito Chat API");
    assert_eq!(anon.get("/").await.body, index.body);
    let health = anon.try_get("/healthz").await.unwrap();
    assert_eq!(health.status, 200);
    assert_eq!(health.body, "ok");
    let missing = anon.post("/api/nothing/here/", json!({})).await;
    assert_eq!(missing.status, 404);

    // A GET without the trailing slash is redirected, as Django does.
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let moved = Api::with_http(no_redirects, &server.base)
        .try_get("/api/chat/conversations?x=1")
        .await
        .unwrap();
    assert_eq!(moved.status, 301);
    assert_eq!(moved.headers["location"], "/api/chat/conversations/?x=1");

    // An oversized body is a JSON 413.
    let ana = server.register("ana").await;
    let huge = ana
        .post(&messages_path(1), json!({"content": "x".repeat(300_000)}))
        .await;
    assert_eq!(huge.status, 413);
    assert!(huge.body["detail"].is_string(), "{}", huge.body);
}
