//! The API described: the OpenAPI 3.1 document at `/api/schema/` (JSON,
//! or YAML with `?format=yaml`), Swagger UI at `/api/docs/` (its assets
//! compiled into the binary) and the AsyncAPI document of the sockets at
//! `/api/asyncapi/`.
//!
//! Each REST route is registered with `utoipa_axum::routes!` from its
//! handler's `#[utoipa::path]`, so a route cannot exist without its
//! operation. The answers every route shares (a bad token, a body too
//! large or too slow, a rate limit, the log unavailable) are added here
//! once, by [`Shared`].

use std::sync::{Arc, OnceLock};

use axum::extract::Query;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde::Deserialize;
use utoipa::openapi::path::{HttpMethod, Operation};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi as _};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::schemas::ErrorBody;
use crate::app::App;

/// The bearer scheme's name in the document.
pub const JWT: &str = "jwt";

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Vato",
        description = "The Vatochito chat API served by Vato: REST (this document) and \
            WebSocket (`/api/asyncapi/`, PROTOCOL.md). Authenticate with \
            `Authorization: Bearer <access>` from `POST /api/auth/login/`.",
        license(name = "MIT", identifier = "MIT"),
    ),
    components(schemas(ErrorBody)),
    tags(
        (name = "auth", description = "Accounts, tokens, phone and Google sign-in"),
        (name = "users", description = "Users, profiles, settings, avatars, devices"),
        (name = "conversations", description = "Direct and group conversations, members"),
        (name = "messages", description = "History, sending, edits, reactions, read marks, pins, forwarding"),
        (name = "attachments", description = "Files in messages, and the media store"),
        (name = "contacts", description = "Contacts, blocks and favourites"),
        (name = "calls", description = "Voice and video calls"),
        (name = "notifications", description = "Notifications of members who are away"),
        (name = "operations", description = "Liveness, readiness, the API's own description"),
    )
)]
pub struct ApiDoc;

/// The answers every operation shares, and the operation ids.
struct Shared;

impl Modify for Shared {
    fn modify(&self, openapi: &mut OpenApi) {
        openapi.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new::<
            &str,
            [&str; 0],
            &str,
        >(JWT, [])]);
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            JWT,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        let mut ids = std::collections::HashSet::new();
        for (path, item) in openapi.paths.paths.iter_mut() {
            for (method, name, op) in [
                (HttpMethod::Get, "get", &mut item.get),
                (HttpMethod::Post, "post", &mut item.post),
                (HttpMethod::Put, "put", &mut item.put),
                (HttpMethod::Patch, "patch", &mut item.patch),
                (HttpMethod::Delete, "delete", &mut item.delete),
            ] {
                if let Some(op) = op {
                    shared_answers(path, &method, op);
                    // One handler under two methods (`PUT` and `PATCH`):
                    // the second id names its method.
                    if let Some(id) = &mut op.operation_id {
                        if !ids.insert(id.clone()) {
                            id.push('_');
                            id.push_str(name);
                            ids.insert(id.clone());
                        }
                    }
                }
            }
        }
    }
}

fn shared_answers(path: &str, method: &HttpMethod, op: &mut Operation) {
    let write = !matches!(method, HttpMethod::Get);
    let api = path.starts_with("/api/");
    // The operation id: its tag and its handler, unique in the document
    // (checked by a test).
    if let (Some(tag), Some(id)) = (op.tags.as_ref().and_then(|t| t.first()), &op.operation_id) {
        if !id.starts_with(tag.as_str()) {
            op.operation_id = Some(format!("{tag}_{id}"));
        }
    }
    let mut add = |code: &str, why: &str| {
        op.responses
            .responses
            .entry(code.into())
            .or_insert_with(|| {
                RefOr::T(
                    ResponseBuilder::new()
                        .description(why)
                        .content(
                            "application/json",
                            ContentBuilder::new()
                                .schema(Some(Ref::from_schema_name("ErrorBody")))
                                .build(),
                        )
                        .build(),
                )
            });
    };
    if api {
        // Public routes refuse a bad token too (as the original does).
        add("401", "No token, or one that is invalid or expired.");
    }
    if write {
        add(
            "400",
            "The body is not a JSON object, or a field is invalid.",
        );
        add(
            "408",
            "The request body did not arrive within `--body-timeout-secs`.",
        );
        add(
            "413",
            "The body is over `--max-body-bytes` (or the route's own limit).",
        );
        add(
            "429",
            "A rate limit: `Retry-After` tells when to try again.",
        );
        add("503", "The message log cannot take writes now; try again.");
    }
}

/// The document, built once from the routes' operations.
static DOCUMENT: OnceLock<(String, String)> = OnceLock::new();

/// The full document: the routes' operations under [`ApiDoc`].
pub fn document(paths: OpenApi) -> OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.merge(paths);
    Shared.modify(&mut doc);
    doc
}

/// Keeps the document for `/api/schema/`.
pub fn publish(doc: &OpenApi) {
    let json = doc
        .to_pretty_json()
        .expect("the OpenAPI document serializes");
    let yaml = doc.to_yaml().expect("the OpenAPI document serializes");
    let _ = DOCUMENT.set((json, yaml));
}

#[derive(Deserialize)]
struct Format {
    format: Option<String>,
}

/// The routes of the description: the schema, the docs page, AsyncAPI.
pub fn router() -> OpenApiRouter<Arc<App>> {
    let docs: Router<Arc<App>> = utoipa_swagger_ui::SwaggerUi::new("/api/docs")
        .config(utoipa_swagger_ui::Config::new(["/api/schema/"]))
        .into();
    // Swagger UI sets inline styles; everything else stays 'self'.
    let docs = docs.layer(tower_http::set_header::SetResponseHeaderLayer::overriding(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
             img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
             frame-ancestors 'none'",
        ),
    ));
    OpenApiRouter::new()
        .routes(routes!(schema))
        .routes(routes!(asyncapi))
        .merge(OpenApiRouter::from(docs))
}

/// This document.
#[utoipa::path(get, path = "/api/schema/", tag = "operations", security(()),
    params(("format" = Option<String>, Query, description = "`yaml` for YAML; JSON otherwise")),
    responses((status = 200, description = "The OpenAPI 3.1 document", content(
        (Object = "application/json"),
        (String = "application/yaml")))))]
async fn schema(Query(format): Query<Format>) -> Response {
    let Some((json, yaml)) = DOCUMENT.get() else {
        return axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    match format.format.as_deref() {
        Some("yaml") => {
            ([(header::CONTENT_TYPE, "application/yaml")], yaml.clone()).into_response()
        }
        _ => ([(header::CONTENT_TYPE, "application/json")], json.clone()).into_response(),
    }
}

/// The sockets' frames as AsyncAPI 3.0 (written by hand: no maintained
/// crate generates AsyncAPI from Rust types; a test checks it names every
/// frame type PROTOCOL.md lists).
pub const ASYNCAPI: &str = include_str!("asyncapi.json");

/// The sockets' frames.
#[utoipa::path(get, path = "/api/asyncapi/", tag = "operations", security(()),
    responses((status = 200, description = "The AsyncAPI 3.0 document of the WebSocket frames", body = Object)))]
async fn asyncapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], ASYNCAPI).into_response()
}
