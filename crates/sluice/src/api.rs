//! The JSON API under `/api/v1/` (a location with `api on`): server, streams and clients from
//! a [`crate::stats::Snapshot`], and actions through the clients registry and the recorders.

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::Response;

use crate::config::Location;
use crate::http::{status_response, HttpState};

/// Answer a request to a location this module handles.
pub async fn respond(state: &HttpState, loc: &Location, path: &str, req: Request) -> Response {
    let _ = (state, loc, path, req);
    status_response(StatusCode::NOT_IMPLEMENTED)
}
