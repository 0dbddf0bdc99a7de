//! The HTTP endpoints: `/metrics`, the landing page, `/-/healthy` and `/-/ready`.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_http::timeout::TimeoutLayer;

use crate::collector::Published;
use crate::landing;
use crate::metrics;

/// A request that takes longer than this is answered 408 (a slow client cannot hold a
/// connection slot forever).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Requests handled at once; more wait for a slot.
const MAX_CONCURRENT_REQUESTS: usize = 512;

const OPENMETRICS_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the handlers read: the latest published cycle, and static facts for the page.
#[derive(Debug, Clone)]
pub struct AppState {
    pub published: watch::Receiver<Arc<Published>>,
    pub info: Arc<landing::PageInfo>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(serve_metrics))
        .route("/", get(serve_landing))
        .route("/-/healthy", get(|| async { "OK\n" }))
        .route("/-/ready", get(serve_ready))
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            MAX_CONCURRENT_REQUESTS,
        ))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` resolves, then finishes open requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

fn wants_openmetrics(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"))
}

/// The latest cycle's pre-encoded bytes plus the process metrics, never waiting on the API.
async fn serve_metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let published = state.published.borrow().clone();
    let (process_text, process_openmetrics) = metrics::encode_process();
    let (content_type, cycle, process) = if wants_openmetrics(&headers) {
        (
            OPENMETRICS_TYPE,
            published.exposition.openmetrics.clone(),
            process_openmetrics,
        )
    } else {
        (
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            published.exposition.text.clone(),
            process_text,
        )
    };
    // Two chunks: the shared cycle bytes are not copied per scrape.
    let chunks = [Ok::<_, Infallible>(cycle), Ok(Bytes::from(process))];
    (
        [(header::CONTENT_TYPE, content_type)],
        Body::from_stream(futures_util::stream::iter(chunks)),
    )
        .into_response()
}

async fn serve_ready(State(state): State<AppState>) -> Response {
    if state.published.borrow().snapshot.is_some() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "waiting for the first collection cycle\n",
        )
            .into_response()
    }
}

async fn serve_landing(State(state): State<AppState>) -> Html<String> {
    let published = state.published.borrow().clone();
    Html(landing::render(&state.info, published.snapshot.as_deref()))
}
