//! The API's own description (`api/doc.rs`): the OpenAPI document, the
//! docs page with no outside asset, and the AsyncAPI document of the
//! sockets. (CI's `ci/schemathesis` checks live answers against the
//! OpenAPI document.)

mod common;

use std::collections::HashSet;

use common::*;
use serde_json::Value;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

#[tokio::test]
async fn the_openapi_document_covers_the_api_with_unique_operations() {
    let server = Server::demo().await;
    let doc = server.anon().get("/api/schema/").await;
    assert_eq!(doc.status, 200);
    let doc = doc.body;
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().expect("paths");

    let mut ids = HashSet::new();
    let mut operations = 0;
    for (path, item) in paths {
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            operations += 1;
            let id = op["operationId"].as_str().expect("an operation id");
            assert!(ids.insert(id.to_owned()), "{id} is used twice");
            let responses = op["responses"].as_object().expect("responses");
            assert!(
                responses.keys().any(|code| code.starts_with('2')),
                "{method} {path} documents no success"
            );
            if path.starts_with("/api/") {
                assert!(responses.contains_key("401"), "{method} {path}: no 401");
            }
            if method != "get" {
                for code in ["400", "413", "429", "503"] {
                    assert!(responses.contains_key(code), "{method} {path}: no {code}");
                }
            }
        }
    }
    assert!(operations >= 86, "only {operations} operations");

    // Routes served under two paths are documented under both, and the
    // contract's paths are all there.
    for (method, path) in [
        ("post", "/api/auth/register/"),
        ("post", "/api/auth/login/"),
        ("post", "/api/auth/token/refresh/"),
        ("get", "/api/auth/user/"),
        ("get", "/api/auth/users/me/"),
        ("patch", "/api/chat/conversations/{cid}/messages/{mid}/"),
        ("put", "/api/chat/conversations/{cid}/messages/{mid}/edit/"),
        ("post", "/api/auth/profile/avatar/"),
        ("post", "/api/auth/profile/me/avatar/"),
        ("get", "/api/chat/conversations/{cid}/messages/"),
        ("post", "/api/chat/conversations/{cid}/messages/"),
        ("get", "/api/chat/calls/active/"),
        ("post", "/api/auth/devices/"),
        ("get", "/api/chat/notifications/"),
        ("get", "/media/{key}"),
        ("get", "/readyz"),
        ("get", "/api/schema/"),
    ] {
        assert!(
            doc["paths"][path].get(method).is_some(),
            "{method} {path} is not documented"
        );
    }
    // A message can be sent as JSON or as a form with files.
    let send = &doc["paths"]["/api/chat/conversations/{cid}/messages/"]["post"];
    let content = send["requestBody"]["content"].as_object().unwrap();
    assert!(content.contains_key("application/json"));
    assert!(content.contains_key("multipart/form-data"));
    // Private routes need the bearer token; the login routes do not.
    assert_eq!(
        doc["components"]["securitySchemes"]["jwt"]["scheme"],
        "bearer"
    );
    assert_eq!(doc["security"][0]["jwt"], serde_json::json!([]));
    let login = &doc["paths"]["/api/auth/login/"]["post"]["security"];
    assert_eq!(login, &serde_json::json!([{}]));

    // The objects with a serde type of their own keep the contract's keys.
    let schemas = &doc["components"]["schemas"];
    let mut keys: Vec<&str> = schemas["Message"]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    let mut expected = vato_client::objects::MESSAGE_KEYS.to_vec();
    expected.sort_unstable();
    assert_eq!(keys, expected);
    assert_eq!(
        schemas["User"]["properties"].as_object().unwrap().len(),
        vato_client::objects::USER_KEYS.len()
    );
    assert_eq!(
        schemas["Profile"]["properties"].as_object().unwrap().len(),
        vato_client::objects::PROFILE_KEYS.len()
    );

    let yaml = server
        .anon()
        .try_get("/api/schema/?format=yaml")
        .await
        .unwrap();
    assert_eq!(yaml.status, 200);
    assert_eq!(yaml.headers["content-type"], "application/yaml");
    let text = yaml.body.as_str().expect("YAML text");
    assert!(text.starts_with("openapi: 3.1.0\n"), "{}", &text[..40]);
    assert!(text.contains("  /api/chat/conversations/:\n"));
}

#[tokio::test]
async fn the_docs_page_loads_nothing_from_outside() {
    let server = Server::demo().await;
    let anon = server.anon();
    let page = anon.try_get("/api/docs/").await.unwrap();
    assert_eq!(page.status, 200);
    let html = page.body.as_str().expect("HTML");
    assert!(html.contains("swagger-ui"), "{html}");
    let init = anon
        .try_get("/api/docs/swagger-initializer.js")
        .await
        .unwrap();
    assert_eq!(init.status, 200);
    let init = init.body.as_str().unwrap();
    assert!(init.contains("/api/schema/"), "{init}");
    for text in [html, init] {
        assert!(!text.contains("https://"), "an outside address: {text}");
        assert!(!text.contains("http://"), "an outside address: {text}");
    }
    for asset in [
        "swagger-ui.css",
        "swagger-ui-bundle.js",
        "swagger-ui-standalone-preset.js",
    ] {
        let got = anon.try_get(&format!("/api/docs/{asset}")).await.unwrap();
        assert_eq!(got.status, 200, "{asset}");
        assert!(
            got.body.as_str().is_some_and(|b| b.len() > 10_000),
            "{asset}"
        );
    }
}

/// The frame types of PROTOCOL.md's WebSocket tables: the first column's
/// backquoted names of every row of the "Inbound" and "Outbound" tables and
/// of the "Calls" section's frame table (server → client; its REST rows
/// name a method and a path, with a space, and are skipped).
fn protocol_frame_types() -> (HashSet<String>, HashSet<String>) {
    let text = include_str!("../../PROTOCOL.md");
    let (mut inbound, mut outbound) = (HashSet::new(), HashSet::new());
    let mut into = None;
    for line in text.lines() {
        if line.starts_with("### Inbound") {
            into = Some(true);
        } else if line.starts_with("### Outbound") || line.starts_with("## Calls") {
            into = Some(false);
        } else if line.starts_with("#") {
            into = None;
        }
        let (Some(inbound_table), Some(cell)) = (into, line.strip_prefix("| `")) else {
            continue;
        };
        let first = cell.split(" |").next().unwrap_or("");
        for name in first.split('`').step_by(2) {
            let name = name.trim_matches(|c: char| c == ',' || c == '/' || c.is_whitespace());
            let frame_like =
                name.contains('.') || name.chars().all(|c| c.is_ascii_lowercase() || c == '_');
            if frame_like && !name.is_empty() && !name.contains(' ') {
                if inbound_table {
                    inbound.insert(name.to_owned());
                } else {
                    outbound.insert(name.to_owned());
                }
            }
        }
    }
    (inbound, outbound)
}

#[tokio::test]
async fn the_asyncapi_document_names_every_frame_of_the_protocol() {
    let server = Server::demo().await;
    let doc = server.anon().get("/api/asyncapi/").await;
    assert_eq!(doc.status, 200);
    let doc = doc.body;
    assert_eq!(doc["asyncapi"], "3.0.0");
    let messages = doc["components"]["messages"].as_object().unwrap();
    let names = |prefix: &str| -> HashSet<String> {
        messages
            .iter()
            .filter(|(key, _)| key.starts_with(prefix))
            .map(|(_, m)| m["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let (inbound, outbound) = protocol_frame_types();
    assert!(
        inbound.len() >= 14 && outbound.len() >= 28,
        "{inbound:?} {outbound:?}"
    );
    let documented_in = names("in.");
    let documented_out = names("out.");
    for name in &inbound {
        assert!(
            documented_in.contains(name),
            "inbound {name} is not in AsyncAPI"
        );
    }
    for name in &outbound {
        assert!(
            documented_out.contains(name),
            "outbound {name} is not in AsyncAPI"
        );
    }
    // Both socket paths, with the token and `since` on the URL.
    let channels = doc["channels"].as_object().unwrap();
    let addresses: HashSet<&str> = channels
        .values()
        .map(|c| c["address"].as_str().unwrap())
        .collect();
    assert_eq!(
        addresses,
        HashSet::from(["/ws/conversations/{id}/", "/ws/chat/{id}/"])
    );
    for channel in channels.values() {
        let query: &Value = &channel["bindings"]["ws"]["query"]["properties"];
        assert!(query.get("token").is_some() && query.get("since").is_some());
    }
}
