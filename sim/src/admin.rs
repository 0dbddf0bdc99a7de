//! Run-time control over HTTP for the `flexcloud-sim` binary: scenario, faults, request log.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};

use super::scenario::{Fault, Scenario};
use super::{Fleet, Shared, lock};

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/-/sim/scenario", put(replace_scenario).get(show_scenario))
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
