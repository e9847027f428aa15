//! The web routes (`api/web.rs`): the index page, the DRF router roots,
//! the health check and unknown paths.

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

/// A browser on another origin (a Flutter web build on its own port) gets
/// CORS headers from a development server without any flag, as from the
/// original's DEBUG settings; a production server answers only the origins
/// it was given.
#[tokio::test]
async fn router_roots_list_their_resources_for_a_logged_in_user() {
    let server = Server::start(&["--dev"]).await;
    let ana = server.register("ana").await;
    let base = server.base.clone();
    let auth = ana.get("/api/auth/").await;
    assert_eq!(auth.status, 200, "{}", auth.body);
    assert_eq!(
        auth.body,
        json!({"users": format!("{base}/api/auth/users/")})
    );
    let chat = ana.get("/api/chat/").await;
    assert_eq!(chat.status, 200, "{}", chat.body);
    assert_eq!(
        chat.body,
        json!({
            "conversations": format!("{base}/api/chat/conversations/"),
            "calls": format!("{base}/api/chat/calls/"),
            "contacts": format!("{base}/api/chat/contacts/"),
        })
    );
    // Each URL is the list route it names.
    for url in [
        &auth.body["users"],
        &chat.body["conversations"],
        &chat.body["calls"],
        &chat.body["contacts"],
    ] {
        let path = url.as_str().unwrap().strip_prefix(&base).unwrap();
        assert_eq!(ana.get(path).await.status, 200, "{path}");
    }
    // Authentication required, with DRF's body.
    for path in ["/api/auth/", "/api/chat/"] {
        let resp = server.anon().get(path).await;
        assert_eq!(resp.status, 401, "{path}: {}", resp.body);
        assert_eq!(
            resp.body,
            json!({"detail": "Authentication credentials were not provided."})
        );
    }
}

#[tokio::test]
async fn cors_any_origin_in_development_only_the_given_ones_in_production() {
    async fn preflight(server: &Server, origin: &str) -> reqwest::Response {
        reqwest::Client::new()
            .request(
                reqwest::Method::OPTIONS,
                format!("{}/api/auth/login/", server.base),
            )
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header("Access-Control-Request-Headers", "content-type")
            .send()
            .await
            .expect("preflight")
    }
    let allowed = |resp: &reqwest::Response| {
        resp.headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap().to_string())
    };

    let demo = Server::start(&["--demo"]).await;
    let resp = preflight(&demo, "http://localhost:5555").await;
    assert!(resp.status().is_success(), "{}", resp.status());
    assert_eq!(allowed(&resp).as_deref(), Some("*"));

    let production = Server::start(&[
        "--jwt-secret",
        "a-production-secret-of-enough-length-0123456789",
        "--cors-origins",
        "https://chat.example.com",
    ])
    .await;
    let resp = preflight(&production, "https://chat.example.com").await;
    assert_eq!(allowed(&resp).as_deref(), Some("https://chat.example.com"));
    let resp = preflight(&production, "http://localhost:5555").await;
    assert_eq!(allowed(&resp), None, "an origin it was not given");

    let production = Server::start(&[
        "--jwt-secret",
        "a-production-secret-of-enough-length-0123456789",
    ])
    .await;
    let resp = preflight(&production, "http://localhost:5555").await;
    assert_eq!(allowed(&resp), None, "no origin without --cors-origins");
}
