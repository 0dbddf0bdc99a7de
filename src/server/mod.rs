//! The HTTP endpoints `/metrics`, the status page, `/-/healthy` and `/-/ready`, with the web
//! config's Basic auth; [`serve`] runs them on the one accept loop of [`conn`].

mod accept;
mod conn;

pub use accept::{Format, accepts_gzip, negotiate};
pub use conn::{Limits, Served, serve, serve_reloading};

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use tokio::sync::watch;
use tower_http::timeout::TimeoutLayer;

use crate::landing;
use crate::metrics::{self, EndpointMetrics, Published};
use crate::web::{BasicAuth, WebConfig};

/// A request that takes longer than this is answered 408 (a slow client cannot hold a
/// connection slot forever).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Requests handled at once; more wait for a slot.
const MAX_CONCURRENT_REQUESTS: usize = 512;

const OPENMETRICS_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the handlers read: the latest published cycle, and static facts for the page.
#[derive(Debug, Clone)]
pub struct ServerState {
    pub published: watch::Receiver<Arc<Published>>,
    pub info: Arc<landing::PageInfo>,
    /// The endpoint's own counters, shared with the accept loop.
    pub endpoint: Arc<EndpointMetrics>,
}

/// The endpoints without authentication or TLS, as served when no web config file is given.
pub fn router(state: ServerState) -> Router {
    secured_router(state, &WebConfig::default())
}

/// Paths answered without Basic auth. exporter-toolkit protects every path, but kubelet and
/// Docker health probes cannot easily send credentials, and these two answer only "OK" or
/// "ready": no metric, no API URL, no account. Everything else, unknown paths included (so a
/// 404 does not map the routes), needs credentials when `basic_auth_users` is set.
pub const UNAUTHENTICATED_PATHS: &[&str] = &["/-/healthy", "/-/ready"];

/// The endpoints with the web config's Basic auth and response headers. Auth sits inside the
/// timeout but outside the concurrency limit: a flood of wrong passwords queues for bcrypt
/// without holding the request slots that Prometheus, whose password is remembered after
/// the first check, needs.
pub fn secured_router(state: ServerState, web: &WebConfig) -> Router {
    let mut app = Router::new()
        .route("/metrics", get(serve_metrics))
        .route("/", get(serve_landing))
        .route("/-/healthy", get(|| async { "OK\n" }))
        .route("/-/ready", get(serve_ready))
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            MAX_CONCURRENT_REQUESTS,
        ));
    if let Some(auth) = &web.basic_auth {
        app = app.layer(axum::middleware::from_fn_with_state(
            auth.clone(),
            require_basic_auth,
        ));
    }
    if !web.headers.is_empty() {
        // Outside the auth layer, so a 401 carries the headers too (as in exporter-toolkit).
        app = app.layer(axum::middleware::from_fn_with_state(
            Arc::new(web.headers.clone()),
            add_headers,
        ));
    }
    app.layer(TimeoutLayer::with_status_code(
        StatusCode::REQUEST_TIMEOUT,
        REQUEST_TIMEOUT,
    ))
    .with_state(state)
}

/// Answers 401 with `WWW-Authenticate: Basic` unless the request carries a listed user's
/// credentials (or asks for one of [`UNAUTHENTICATED_PATHS`]).
async fn require_basic_auth(
    State(auth): State<Arc<BasicAuth>>,
    request: Request,
    next: Next,
) -> Response {
    if UNAUTHENTICATED_PATHS.contains(&request.uri().path())
        || auth
            .check(
                request.headers().get(header::AUTHORIZATION),
                request
                    .extensions()
                    .get::<conn::PeerAddr>()
                    .map(|p| p.0.ip()),
            )
            .await
    {
        return next.run(request).await;
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Basic")],
        "Unauthorized\n",
    )
        .into_response()
}

async fn add_headers(
    State(headers): State<Arc<Vec<(HeaderName, HeaderValue)>>>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = next.run(request).await;
    for (name, value) in headers.iter() {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    response
}

/// A header's field lines as one list (RFC 9110 5.3); a line that is not text is no element.
fn joined(headers: &HeaderMap, name: HeaderName) -> Option<String> {
    let lines: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!lines.is_empty()).then(|| lines.join(", "))
}

/// The latest cycle's pre-encoded bytes plus the scrape-time metrics, never waiting on the
/// API. A client that takes gzip gets the cycle's part compressed once per cycle and only
/// the small tail compressed now; any other gets the plain bytes.
async fn serve_metrics(State(state): State<ServerState>, headers: HeaderMap) -> Response {
    let published = state.published.borrow().clone();
    let format = negotiate(joined(&headers, header::ACCEPT).as_deref());
    let gzip = accepts_gzip(joined(&headers, header::ACCEPT_ENCODING).as_deref());
    let (scrape_text, scrape_openmetrics) = metrics::encode_scrape_time(Some(&state.endpoint));
    let (content_type, tail) = match format {
        Format::OpenMetrics => (OPENMETRICS_TYPE, scrape_openmetrics),
        Format::Text => (
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            scrape_text,
        ),
    };
    if gzip {
        published.exposition.demand.note(format);
    } else {
        published.exposition.demand.note_plain(format);
    }
    let published = if published.exposition.is_encoded(format) {
        published
    } else {
        // The first client of this format since the cycle ended: encoding a large fleet
        // takes a while, so not on a worker that serves other connections.
        let encoding = published.clone();
        match tokio::task::spawn_blocking(move || {
            encoding.exposition.format(format);
        })
        .await
        {
            Ok(()) => published,
            Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        }
    };
    let encoded = published.exposition.format(format);
    let mut response = if gzip {
        // Two chunks: the shared cycle bytes are not copied per scrape.
        let [cycle, end] = encoded.gzip_with(tail.as_bytes());
        let chunks = [Ok::<_, Infallible>(cycle), Ok(end)];
        let mut response = Body::from_stream(futures_util::stream::iter(chunks)).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        response
    } else {
        let chunks = [Ok::<_, Infallible>(encoded.plain()), Ok(Bytes::from(tail))];
        Body::from_stream(futures_util::stream::iter(chunks)).into_response()
    };
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::VARY,
        HeaderValue::from_static("Accept, Accept-Encoding"),
    );
    response
}

async fn serve_ready(State(state): State<ServerState>) -> Response {
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

/// The status page allows no script, frame or remote resource, so a value that escaped
/// escaping still could not run or load anything; inline style only.
const LANDING_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'";

async fn serve_landing(State(state): State<ServerState>) -> Response {
    let published = state.published.borrow().clone();
    let page = landing::render(
        &state.info,
        published.snapshot.as_deref(),
        std::time::SystemTime::now(),
    );
    (
        [(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(LANDING_CSP),
        )],
        Html(page),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::{Duration, UNIX_EPOCH};

    use axum::body::Body;
    use axum::http::Request;
    use base64::Engine as _;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;
    use crate::metrics::Metrics;
    use crate::snapshot::Snapshot;

    fn state() -> (watch::Sender<Arc<Published>>, ServerState) {
        let metrics = Metrics::new(10);
        let at = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let (tx, rx) = watch::channel(Arc::new(Published {
            snapshot: None,
            exposition: metrics.encode(None, at),
        }));
        let state = ServerState {
            published: rx,
            info: Arc::new(landing::PageInfo {
                version: "test",
                api_url: "https://api.example.com/".into(),
                interval: Duration::from_secs(60),
                shard: None,
            }),
            endpoint: Arc::default(),
        };
        (tx, state)
    }

    fn finished_cycle(tx: &watch::Sender<Arc<Published>>) {
        let snapshot = Snapshot {
            cycle: 1,
            up: true,
            ..Snapshot::default()
        };
        let snapshot = Arc::new(snapshot);
        let exposition = Metrics::new(10).encode(Some(snapshot.clone()), UNIX_EPOCH);
        tx.send_replace(Arc::new(Published {
            snapshot: Some(snapshot),
            exposition,
        }));
    }

    async fn get(
        router: &Router,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, HeaderMap, String) {
        let mut request = Request::get(path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = router
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        (
            parts.status,
            parts.headers,
            String::from_utf8(bytes.to_vec()).unwrap(),
        )
    }

    #[tokio::test]
    async fn ready_only_once_the_first_cycle_is_published() {
        let (tx, state) = state();
        let router = router(state);
        assert_eq!(get(&router, "/-/healthy", &[]).await.0, StatusCode::OK);
        assert_eq!(
            get(&router, "/-/ready", &[]).await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        finished_cycle(&tx);
        assert_eq!(get(&router, "/-/ready", &[]).await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn metrics_are_the_published_bytes_in_the_format_asked_for() {
        let (tx, state) = state();
        finished_cycle(&tx);
        let router = router(state);
        let (status, headers, text) = get(&router, "/metrics", &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            headers[header::CONTENT_TYPE],
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE
        );
        assert!(text.contains("flexcloud_up 1\n"), "{text}");
        assert!(text.contains("# TYPE process_cpu_seconds_total counter"));
        assert!(!text.contains("# EOF"));

        let accept = [("accept", "application/openmetrics-text; version=1.0.0")];
        let (status, headers, text) = get(&router, "/metrics", &accept).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_TYPE], OPENMETRICS_TYPE);
        assert!(text.contains("flexcloud_up 1\n"));
        assert!(text.ends_with("# EOF\n") && text.matches("# EOF").count() == 1);
    }

    #[tokio::test]
    async fn the_status_page_shows_the_published_cycle() {
        let (tx, state) = state();
        let router = router(state);
        let (_, _, before) = get(&router, "/", &[]).await;
        assert!(before.contains("has not finished yet"), "{before}");
        finished_cycle(&tx);
        let (status, headers, page) = get(&router, "/", &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        assert!(page.contains("cycle 1 ended"), "{page}");
        assert!(page.contains("rendered <time>"));
        assert_eq!(headers[header::CONTENT_SECURITY_POLICY], LANDING_CSP);
    }

    #[tokio::test]
    async fn the_status_page_shows_stuck_images_and_the_back_off_of_the_latest_cycle() {
        use crate::api::{CredentialState, ImageType};
        use crate::snapshot::{Inventory, Outcome, SavingImage, ZoneState};
        let (tx, state) = state();
        let router = router(state);
        let now = std::time::SystemTime::now();
        let created = now - Duration::from_secs(2 * 3600 + 5);
        let mut snapshot = Snapshot {
            cycle: 3,
            up: true,
            completed_at: Some(now - Duration::from_secs(1)),
            credentials: CredentialState::Suspended {
                rejections: 1,
                wait: Duration::from_secs(120),
                remaining: Duration::from_secs(100),
            },
            ..Snapshot::default()
        };
        snapshot.zones.insert(
            ("acme".into(), "TAMPA".into()),
            ZoneState {
                probe: Some(Outcome::succeeded(Duration::from_millis(4))),
                inventory: Some(Arc::new(Inventory {
                    saving: vec![SavingImage {
                        image_type: ImageType::Server,
                        id: "42".into(),
                        name: "<b>db</b>".into(),
                        created: Some(crate::timestamp::unix_seconds(created)),
                    }],
                    ..Inventory::default()
                })),
                held_saving: None,
                last_success: Some(now),
            },
        );
        let snapshot = Arc::new(snapshot);
        let exposition = Metrics::new(10).encode(Some(snapshot.clone()), UNIX_EPOCH);
        tx.send_replace(Arc::new(Published {
            snapshot: Some(snapshot),
            exposition,
        }));
        let (status, _, page) = get(&router, "/", &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains("cycle 3 ended"), "{page}");
        assert!(page.contains("<tr class=\"stuck\">"), "{page}");
        assert!(page.contains(">&lt;b&gt;db&lt;/b&gt;</td>") && !page.contains("<b>db"));
        assert!(page.contains("<td class=\"num\">2 h</td>"), "{page}");
        assert!(page.contains("holding back until <time>"), "{page}");
    }

    fn basic(user: &str, password: &str) -> String {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        format!("Basic {encoded}")
    }

    #[tokio::test]
    async fn basic_auth_guards_every_path_but_the_probes_and_headers_go_on_every_answer() {
        let hash = bcrypt::hash("right", 4).unwrap();
        let web = WebConfig::parse(
            &format!(
                "basic_auth_users:\n  prom: {hash}\nhttp_server_config:\n  headers:\n    X-Frame-Options: deny\n"
            ),
            Path::new("web.yml"),
        )
        .unwrap();
        let (tx, state) = state();
        finished_cycle(&tx);
        let router = secured_router(state, &web);
        for path in ["/metrics", "/", "/no-such-page"] {
            for credentials in [
                None,
                Some(basic("prom", "wrong")),
                Some(basic("eve", "right")),
            ] {
                let headers: Vec<(&str, &str)> = credentials
                    .as_deref()
                    .map(|c| ("authorization", c))
                    .into_iter()
                    .collect();
                let (status, headers, _) = get(&router, path, &headers).await;
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} {credentials:?}");
                assert_eq!(headers[header::WWW_AUTHENTICATE], "Basic");
                assert_eq!(headers["x-frame-options"], "deny");
            }
        }
        let right = basic("prom", "right");
        let (status, headers, _) = get(&router, "/metrics", &[("authorization", &right)]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["x-frame-options"], "deny");
        let (status, _, _) = get(&router, "/no-such-page", &[("authorization", &right)]).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        for path in UNAUTHENTICATED_PATHS {
            assert_eq!(get(&router, path, &[]).await.0, StatusCode::OK, "{path}");
        }
    }
}
