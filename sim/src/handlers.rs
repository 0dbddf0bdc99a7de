//! The API's endpoints as the reference describes them, answered from the scenario.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use serde_json::{Map, Value, json};

use super::paging::{self, Paging};
use super::scenario::{Account, Image, ImageState, Scenario, User};
use super::{Fleet, Shared, lock};
use crate::timestamp::format_api;

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/accounts", get(list_accounts))
        .route("/accounts/{account}/flexcloud/zone", get(list_zones))
        .route(
            "/accounts/{account}/flexcloud/images/detail",
            get(list_images_detail),
        )
        .route(
            "/accounts/{account}/flexcloud/images",
            get(list_images_short),
        )
        .route(
            "/accounts/{account}/flexcloud/images/{image}",
            get(show_image),
        )
        .route("/images/detail", get(list_own_images_detail))
        .fallback(not_found)
}

/// The Basic-auth user name carried by a request, whatever its password.
pub(super) fn basic_user(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// Why a request is refused before it reaches the data.
enum Denied {
    Unauthorized,
    NotFound,
    Forbidden,
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        match self {
            Denied::Unauthorized => unauthorized(),
            Denied::NotFound => item_not_found(),
            Denied::Forbidden => error_body("forbidden", StatusCode::FORBIDDEN, "forbidden"),
        }
    }
}

fn authenticate<'s>(scenario: &'s Scenario, headers: &HeaderMap) -> Result<&'s User, Denied> {
    basic_user(headers)
        .and_then(|(name, password)| {
            scenario
                .users
                .iter()
                .find(|u| u.username == name && u.password == password)
        })
        .ok_or(Denied::Unauthorized)
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Basic realm=\"FlexCloud API\""), (header::CONTENT_TYPE, "text/plain")],
        "This server could not verify that you are authorized to access the document you requested.",
    )
        .into_response()
}

/// The API's error object: `{"<kind>": {"message", "code", "details", ...}}`.
pub(super) fn error_body(kind: &str, status: StatusCode, message: &str) -> Response {
    let mut inner = json!({ "message": message, "code": status.as_u16(), "details": "" });
    let id_key = if kind == "itemNotFound" {
        "guid"
    } else {
        "errorid"
    };
    inner[id_key] = Value::String(pseudo_guid());
    (status, Json(json!({ kind: inner }))).into_response()
}

fn pseudo_guid() -> String {
    let n: u128 = rand::random();
    let h = format!("{n:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn item_not_found() -> Response {
    error_body("itemNotFound", StatusCode::NOT_FOUND, "Resource not found")
}

fn can_read(user: &User, account: &str) -> bool {
    user.accounts.iter().any(|a| a == "*" || a == account)
}

/// The account, or the documented 404 (unknown) / 403 (not this user's) answer.
fn readable_account<'s>(fleet: &'s Fleet, user: &User, id: &str) -> Result<&'s Account, Denied> {
    let account = fleet.account(id).ok_or(Denied::NotFound)?;
    if !can_read(user, id) {
        return Err(Denied::Forbidden);
    }
    Ok(account)
}

/// Scheme, host and port the client used, for absolute links as the API sends them.
fn origin(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}")
}

fn see_other(location: String) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response()
}

/// Applies the paging rule to `items` and wraps them under `key`; `links_when_whole`
/// says whether an unpaged answer still carries an (empty) `links` array.
/// The answer for a list of `items`, each written as JSON by `render` only if it is on the
/// page asked for, so a large list costs its page, not its length.
fn paged<T>(
    items: &[T],
    render: impl Fn(&T) -> Value,
    key: &str,
    req: &Request,
    links_when_whole: bool,
) -> Response {
    let base = format!("{}{}", origin(req.headers()), req.uri().path());
    match paging::decide(items.len(), &base, req.uri().query().unwrap_or("")) {
        Paging::All => {
            let mut body = Map::new();
            body.insert(key.into(), items.iter().map(render).collect());
            if links_when_whole {
                body.insert("links".into(), Value::Array(vec![]));
            }
            Json(Value::Object(body)).into_response()
        }
        Paging::Page { range, links } => {
            let page: Vec<Value> = items.get(range).unwrap_or(&[]).iter().map(render).collect();
            Json(json!({ key: page, "links": links })).into_response()
        }
        Paging::SeeOther(location) => see_other(location),
        Paging::BadRequest(message) => error_body("badRequest", StatusCode::BAD_REQUEST, &message),
    }
}

fn query_value(req: &Request, key: &str) -> Option<String> {
    paging::form_pairs(req.uri().query().unwrap_or(""))
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

async fn list_accounts(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let fleet = lock(&shared.fleet);
    let user = match authenticate(&fleet.scenario, req.headers()) {
        Ok(u) => u,
        Err(r) => return r.into_response(),
    };
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        return error_body(
            "unsupportedMediaType",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json",
        );
    }
    let filter = query_value(&req, "filterStatus");
    if let Some(f) = &filter {
        if !["pending", "open", "suspended", "closed"].contains(&f.as_str()) {
            return error_body(
                "badRequest",
                StatusCode::BAD_REQUEST,
                "filterStatus is not a known status",
            );
        }
    }
    let origin = origin(req.headers());
    let items: Vec<&Account> = fleet
        .scenario
        .accounts
        .iter()
        .filter(|a| can_read(user, &a.id))
        .filter(|a| filter.as_deref().is_none_or(|f| a.status == f))
        .collect();
    let render = |a: &&Account| {
        json!({
            "accountNumber": a.id,
            "status": a.status,
            "createdDate": a.created,
            "currency": a.currency,
            "links": [{ "rel": "self", "href": format!("{origin}/accounts/{}", a.id) }],
        })
    };
    paged(&items, render, "list", &req, true)
}

async fn list_zones(
    State(shared): State<Arc<Shared>>,
    Path(account): Path<String>,
    req: Request,
) -> Response {
    let fleet = lock(&shared.fleet);
    let account = match authenticate(&fleet.scenario, req.headers())
        .and_then(|user| readable_account(&fleet, user, &account))
    {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let zones: Vec<Value> = account
        .zones
        .iter()
        .map(|z| json!({ "zone": z.zone, "location": z.location }))
        .collect();
    Json(json!({ account.id.clone(): zones })).into_response()
}

/// Which image fields an answer carries.
#[derive(Clone, Copy)]
enum Shape {
    Detail,
    Short,
}

/// The times one answer is written at: the schedule's and the wall clock's.
#[derive(Clone, Copy)]
struct Moment {
    /// Since the scenario was loaded, for image changes.
    elapsed: Duration,
    now: SystemTime,
    loaded: SystemTime,
}

impl Moment {
    fn of(fleet: &Fleet) -> Self {
        Moment {
            elapsed: fleet.elapsed(),
            now: SystemTime::now(),
            loaded: fleet.loaded_wall,
        }
    }
}

/// An image that an answer shows, as it stands at the answer's moment.
type Shown<'f> = (&'f Image, ImageState<'f>);

fn image_json((image, state): &Shown<'_>, origin: &str, at: Moment, shape: Shape) -> Value {
    let href = format!(
        "{origin}/accounts/{}/flexcloud/images/{}/",
        image.account, image.id
    );
    let mut obj = Map::new();
    obj.insert("id".into(), json!(image.id));
    obj.insert("name".into(), json!(image.name));
    obj.insert(
        "links".into(),
        json!([{ "href": href, "rel": "self" }, { "href": href, "rel": "bookmark" }]),
    );
    if !image.legacy {
        obj.insert("zones".into(), json!(state.zones));
    }
    if let Shape::Detail = shape {
        let created = match image.created_at(at.loaded, at.now) {
            Some(created) => format_api(created),
            None => image.created.clone(),
        };
        obj.insert("status".into(), json!(state.status));
        obj.insert("updated".into(), Value::Null);
        obj.insert("created".into(), json!(created));
        for (k, v) in &image.extra {
            obj.insert(k.clone(), v.clone());
        }
    }
    Value::Object(obj)
}

fn matching_images<'f>(
    fleet: &'f Fleet,
    account: &str,
    req: &Request,
    at: Moment,
) -> Vec<Shown<'f>> {
    let name = query_value(req, "name");
    let status = query_value(req, "status");
    let image_type = query_value(req, "type");
    let zone = query_value(req, "zone");
    fleet
        .account_images(account)
        .filter(|i| name.as_deref().is_none_or(|n| i.name == n))
        .filter(|i| image_type.as_deref().is_none_or(|t| i.image_type == t))
        .filter_map(|i| Some((i, i.state_at(at.elapsed)?)))
        .filter(|(_, state)| status.as_deref().is_none_or(|s| state.status == s))
        .filter(|(_, state)| {
            zone.as_deref()
                .is_none_or(|z| state.zones.iter().any(|iz| iz == z))
        })
        .collect()
}

async fn list_images_detail(
    State(shared): State<Arc<Shared>>,
    Path(account): Path<String>,
    req: Request,
) -> Response {
    list_images(&shared, Some(account), req, Shape::Detail)
}

async fn list_images_short(
    State(shared): State<Arc<Shared>>,
    Path(account): Path<String>,
    req: Request,
) -> Response {
    list_images(&shared, Some(account), req, Shape::Short)
}

async fn list_own_images_detail(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    list_images(&shared, None, req, Shape::Detail)
}

fn list_images(shared: &Shared, account: Option<String>, req: Request, shape: Shape) -> Response {
    let fleet = lock(&shared.fleet);
    let scenario = &fleet.scenario;
    let user = match authenticate(scenario, req.headers()) {
        Ok(u) => u,
        Err(r) => return r.into_response(),
    };
    // The account-less form acts on the credentials' own (first readable) account.
    let account = account.or_else(|| {
        scenario
            .accounts
            .iter()
            .find(|a| can_read(user, &a.id))
            .map(|a| a.id.clone())
    });
    let Some(account) = account else {
        return item_not_found();
    };
    if let Err(r) = readable_account(&fleet, user, &account) {
        return r.into_response();
    }
    let at = Moment::of(&fleet);
    let items = matching_images(&fleet, &account, &req, at);
    let origin = origin(req.headers());
    paged(
        &items,
        |image: &Shown<'_>| image_json(image, &origin, at, shape),
        "images",
        &req,
        false,
    )
}

async fn show_image(
    State(shared): State<Arc<Shared>>,
    Path((account, image)): Path<(String, String)>,
    req: Request,
) -> Response {
    let fleet = lock(&shared.fleet);
    let scenario = &fleet.scenario;
    if let Err(r) =
        authenticate(scenario, req.headers()).and_then(|u| readable_account(&fleet, u, &account))
    {
        return r.into_response();
    }
    let image_id = image.trim_end_matches('/');
    let at = Moment::of(&fleet);
    let shown = fleet
        .account_images(&account)
        .filter(|i| i.id == image_id)
        .find_map(|i| Some((i, i.state_at(at.elapsed)?)));
    match shown {
        Some(shown) => Json(json!({
            "image": image_json(&shown, &origin(req.headers()), at, Shape::Detail)
        }))
        .into_response(),
        None => item_not_found(),
    }
}

async fn not_found(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let fleet = lock(&shared.fleet);
    if let Err(r) = authenticate(&fleet.scenario, &headers) {
        return r.into_response();
    }
    item_not_found()
}
