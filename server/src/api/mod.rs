//! The REST API: one router per resource, merged here.

use std::sync::Arc;

use axum::Router;
use utoipa_axum::router::OpenApiRouter;

use crate::app::App;

mod attachments;
mod auth;
mod avatar;
mod body;
mod calls;
mod contacts;
mod conversations;
pub mod doc;
mod external_login;
pub mod extract;
mod forward;
mod logout;
pub mod media;
mod messages;
mod notifications;
mod pins;
mod profile;
pub mod schemas;
mod settings;
mod users;
pub mod web;

/// The REST routes, each with its OpenAPI operation; the document is
/// published for `/api/schema/` as the routes are built.
pub fn router() -> Router<Arc<App>> {
    let (routes, paths) = OpenApiRouter::new()
        .merge(auth::router())
        .merge(external_login::router())
        .merge(logout::router())
        .merge(users::router())
        .merge(profile::router())
        .merge(settings::router())
        .merge(attachments::router())
        .merge(avatar::router())
        .merge(media::router())
        .merge(conversations::router())
        .merge(messages::router())
        .merge(contacts::router())
        .merge(pins::router())
        .merge(forward::router())
        .merge(calls::router())
        .merge(notifications::router())
        .merge(web::router())
        .merge(doc::router())
        .split_for_parts();
    doc::publish(&doc::document(paths));
    routes
}
