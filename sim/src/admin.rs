//! Run-time control over HTTP for the `flexcloud-sim` binary: scenario, image changes, faults,
//! request log.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};

use super::scenario::{Fault, ImageChange, Scenario, ScenarioError};
use super::{Fleet, Shared, lock};

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/-/sim/scenario", put(replace_scenario).get(show_scenario))
        .route("/-/sim/images/{id}/changes", post(schedule_change))
        .route("/-/sim/faults", post(add_fault).delete(clear_faults))
        .route("/-/sim/requests", get(show_requests).delete(clear_requests))
}

async fn replace_scenario(State(shared): State<Arc<Shared>>, body: String) -> Response {
    match Scenario::from_json(&body) {
        Ok(scenario) => {
            *lock(&shared.fleet) = Fleet::new(scenario);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

async fn show_scenario(State(shared): State<Arc<Shared>>) -> Response {
    Json(lock(&shared.fleet).scenario.clone()).into_response()
}

/// Answers the change as stored, its `after` counted from load, so that a caller sees where
/// on the scenario's clock it landed.
async fn schedule_change(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: String,
) -> Response {
    let change = match serde_json::from_str::<ImageChange>(&body) {
        Ok(change) => change,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    match lock(&shared.fleet).schedule(&id, change) {
        Ok(stored) => Json(stored).into_response(),
        Err(e @ ScenarioError::UnknownImage(_)) => {
            (StatusCode::NOT_FOUND, e.to_string()).into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

async fn add_fault(State(shared): State<Arc<Shared>>, body: String) -> Response {
    match serde_json::from_str::<Fault>(&body) {
        Ok(fault) => {
            lock(&shared.fleet).push_fault(fault);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

async fn clear_faults(State(shared): State<Arc<Shared>>) -> StatusCode {
    lock(&shared.fleet).clear_faults();
    StatusCode::NO_CONTENT
}

async fn show_requests(State(shared): State<Arc<Shared>>) -> Response {
    let log: Vec<_> = lock(&shared.log).iter().cloned().collect();
    Json(log).into_response()
}

async fn clear_requests(State(shared): State<Arc<Shared>>) -> StatusCode {
    lock(&shared.log).clear();
    StatusCode::NO_CONTENT
}
