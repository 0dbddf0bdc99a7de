//! Latency and fault injection, applied in front of every API endpoint.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use http_body_util::BodyExt;
use rand::Rng;

use super::handlers::{basic_user, error_body};
use super::scenario::FaultAction;
use super::{ConnectionControl, RequestRecord, Shared, lock, record, within_rate_limit};

/// Logs the request, waits the scenario's latency, then applies the first matching fault
/// or lets the endpoint answer.
pub(super) async fn inject(
    State(shared): State<Arc<Shared>>,
    req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let at = std::time::Instant::now();
    let quota = within_rate_limit(&shared, at);
    record(
        &shared,
        RequestRecord {
            method: req.method().to_string(),
            path: path.clone(),
            query: query.clone(),
            user: basic_user(req.headers()).map(|(user, _)| user),
            sent_credentials: req.headers().contains_key(header::AUTHORIZATION),
            accept_encoding: req
                .headers()
                .get(header::ACCEPT_ENCODING)
                .and_then(|v| v.to_str().ok())
                .map(String::from),
            at,
            throttled: quota.is_err(),
        },
    );
    if let Err(retry_after) = quota {
        let mut response = default_error(StatusCode::TOO_MANY_REQUESTS);
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from(retry_after));
        return response;
    }
    let (latency, fault) = {
        let mut fleet = lock(&shared.fleet);
        let latency = fleet.scenario.latency;
        (latency, fleet.take_fault(&path, &query))
    };
    let jitter = if latency.jitter.is_zero() {
        Duration::ZERO
    } else {
        rand::rng().random_range(Duration::ZERO..=latency.jitter)
    };
    let wait = latency.fixed + jitter;
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    match fault {
        None => next.run(req).await,
        Some(action) => apply(action, req, next).await,
    }
}

async fn apply(action: FaultAction, req: Request, next: Next) -> Response {
    match action {
        FaultAction::Status { status, body, retry_after } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut response = match body {
                Some(body) => (status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
                None => default_error(status),
            };
            if let Some(value) = retry_after.and_then(|v| v.parse().ok()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
        FaultAction::Delay { delay } => {
            tokio::time::sleep(delay).await;
            next.run(req).await
        }
        FaultAction::MalformedJson => json_200(Body::from(r#"{"images": [{"id": "1", "name": "bro"#)),
        FaultAction::Truncated => {
            let (parts, body) = next.run(req).await.into_parts();
            let Ok(collected) = body.collect().await else {
                return StatusCode::INTERNAL_SERVER_ERROR.into_response();
            };
            let full = collected.to_bytes();
            let half = full.slice(..full.len() / 2);
            // Content-Length promises the whole body; the stream ends in an error after
            // half of it, which makes the server close the connection mid-body.
            let chunks = stream::unfold(Some(half), |half| async move {
                match half {
                    Some(half) => Some((Ok(half), None)),
                    None => {
                        // Let the half body reach the client before the connection dies.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        let cut = std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "truncated");
                        Some((Err(cut), None))
                    }
                }
            });
            let mut response = Response::from_parts(parts, Body::from_stream(chunks));
            response
                .headers_mut()
                .insert(header::CONTENT_LENGTH, full.len().into());
            response
        }
        FaultAction::Html => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            "<!DOCTYPE html><html><head><title>Sign in</title></head><body><h1>Please sign in</h1></body></html>",
        )
            .into_response(),
        FaultAction::Oversized { bytes } => json_200(oversized_body(bytes)),
        FaultAction::GzipBomb { decoded_bytes } => {
            let mut response = json_200(gzip_bomb(decoded_bytes));
            response
                .headers_mut()
                .insert(header::CONTENT_ENCODING, header::HeaderValue::from_static("gzip"));
            response
        }
        FaultAction::Drip { interval, chunk_bytes } => {
            let (parts, body) = next.run(req).await.into_parts();
            let Ok(collected) = body.collect().await else {
                return StatusCode::INTERNAL_SERVER_ERROR.into_response();
            };
            let full = collected.to_bytes();
            let size = chunk_bytes.max(1);
            let chunks = stream::unfold(0usize, move |at| {
                let full = full.clone();
                async move {
                    if at >= full.len() {
                        return None;
                    }
                    tokio::time::sleep(interval).await;
                    let end = (at + size).min(full.len());
                    Some((Ok::<_, Infallible>(full.slice(at..end)), end))
                }
            });
            let mut parts = parts;
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, Body::from_stream(chunks))
        }
        FaultAction::DropConnection => close_connection(req.extensions().get().cloned(), false).await,
        FaultAction::ResetConnection => close_connection(req.extensions().get().cloned(), true).await,
        FaultAction::Redirect { location, status } => {
            let status = StatusCode::from_u16(status)
                .ok()
                .filter(StatusCode::is_redirection)
                .unwrap_or(StatusCode::SEE_OTHER);
            (status, [(header::LOCATION, location)]).into_response()
        }
    }
}

fn json_200(body: Body) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// The error answer the API (or the proxy in front of it) gives for `status`.
fn default_error(status: StatusCode) -> Response {
    match status.as_u16() {
        401 => (
            status,
            "This server could not verify that you are authorized.",
        )
            .into_response(),
        403 => error_body("forbidden", status, "forbidden"),
        404 => error_body("itemNotFound", status, "Resource not found"),
        400 => error_body("badRequest", status, "Bad request"),
        413 | 429 => error_body("overLimit", status, "Rate limit exceeded"),
        502 | 504 => (
            status,
            [(header::CONTENT_TYPE, "text/html")],
            format!("<html><body><h1>{status}</h1></body></html>"),
        )
            .into_response(),
        503 => error_body("serviceUnavailable", status, "Service unavailable"),
        _ => error_body("computeFault", status, "Internal error"),
    }
}

/// Ends the request's connection without an answer; the connection task drops it (and
/// with `reset`, sends RST instead of FIN).
async fn close_connection(control: Option<ConnectionControl>, reset: bool) -> Response {
    if let Some(control) = control {
        control.reset.store(reset, Ordering::SeqCst);
        control.close.notify_one();
        std::future::pending::<()>().await;
    }
    StatusCode::INTERNAL_SERVER_ERROR.into_response()
}

/// A body of exactly `bytes` bytes that starts like an image list and goes on with
/// well-formed images, produced lazily so the simulator itself stays small.
/// The oversized body, gzip-compressed as it is sent: only what the client reads is ever
/// compressed, so the bomb costs the simulator what it costs the client.
fn gzip_bomb(decoded_bytes: u64) -> Body {
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use std::io::Write;
    const PIECE: usize = 256 * 1024;
    let padding = vec![b' '; PIECE];
    let state = (GzEncoder::new(Vec::new(), Compression::best()), 0u64, false);
    let chunks = stream::unfold(state, move |(mut encoder, written, done)| {
        let padding = padding.clone();
        async move {
            if done {
                return None;
            }
            if written >= decoded_bytes {
                let tail = encoder.finish().unwrap_or_default();
                return Some((
                    Ok::<_, std::io::Error>(Bytes::from(tail)),
                    (
                        GzEncoder::new(Vec::new(), Compression::best()),
                        written,
                        true,
                    ),
                ));
            }
            // Compressing is the only work here: let the runtime's other tasks (in a test,
            // the client itself) run between pieces.
            tokio::task::yield_now().await;
            let take = (decoded_bytes - written).min(PIECE as u64) as usize;
            let piece: &[u8] = if written == 0 {
                br#"{"images": ["#
            } else {
                &padding[..take]
            };
            encoder.write_all(piece).ok()?;
            // Out now, not when the encoder's buffer fills: a client decodes as it reads.
            encoder.flush().ok()?;
            let compressed = std::mem::take(encoder.get_mut());
            Some((
                Ok(Bytes::from(compressed)),
                (encoder, written + piece.len() as u64, false),
            ))
        }
    });
    Body::from_stream(chunks)
}

fn oversized_body(bytes: u64) -> Body {
    const HEAD: &[u8] = br#"{"images": ["#;
    const ITEM: &[u8] = br#"{"id": "9", "name": "padding", "status": "ACTIVE", "created": "2012-01-01T00:00:00", "zones": ["Z"]},"#;
    let chunk: Bytes = ITEM.repeat(64 * 1024 / ITEM.len()).into();
    let head = Bytes::from_static(HEAD);
    let chunks = stream::unfold(0u64, move |sent| {
        let chunk = chunk.clone();
        let head = head.clone();
        async move {
            if sent >= bytes {
                return None;
            }
            let piece = if sent == 0 { head } else { chunk };
            let take = (bytes - sent).min(piece.len() as u64);
            Some((
                Ok::<_, Infallible>(piece.slice(..take as usize)),
                sent + take,
            ))
        }
    });
    Body::from_stream(chunks)
}
