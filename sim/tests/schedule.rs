//! Scheduled image changes: served once due, counted from load or from `schedule`, over the
//! handle and the admin endpoint.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use flexcloud_sim::{ImageChange, Scenario, Simulator};
use reqwest::StatusCode;
use serde_json::Value;

const USER: &str = "alice";
const PASSWORD: &str = "s3cret";
const NOW: Duration = Duration::ZERO;
/// Far enough off that no test run reaches it.
const LATER: Duration = Duration::from_secs(3600);
/// Short enough to wait for, long enough that a first look comes before it.
const SOON: Duration = Duration::from_millis(200);
/// How long a real-time wait may take on a loaded machine before the test gives up.
const PATIENCE: Duration = Duration::from_secs(30);

fn fleet() -> Scenario {
    Scenario::default()
        .user(USER, PASSWORD, &["acme01"])
        .account("acme01", &["US-TAMPA-1", "US-AUSTIN-1"])
        .image("acme01", "101", "ACTIVE", "BASE", &["US-TAMPA-1"])
        .image_with(
            "acme01",
            "102",
            "SAVING",
            "SERVER",
            &["US-TAMPA-1"],
            |mut i| {
                i.age = Some(Duration::from_secs(240));
                i
            },
        )
}

struct Api {
    sim: Simulator,
    http: reqwest::Client,
}

impl Api {
    async fn start(scenario: Scenario) -> Self {
        let sim = Simulator::start_local(scenario).await.unwrap();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        Api { sim, http }
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.sim.url()))
            .basic_auth(USER, Some(PASSWORD))
            .header("Content-Type", "application/json")
            .send()
            .await
            .unwrap()
    }

    async fn json(&self, path: &str) -> Value {
        let response = self.get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        response.json().await.unwrap()
    }

    /// Image id to status, as the detail list with `query` shows them.
    async fn statuses(&self, query: &str) -> Vec<(String, String)> {
        let body = self
            .json(&format!("/accounts/acme01/flexcloud/images/detail{query}"))
            .await;
        body["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                let field = |k: &str| i[k].as_str().unwrap().to_string();
                (field("id"), field("status"))
            })
            .collect()
    }

    async fn image(&self, id: &str) -> Value {
        self.json(&format!("/accounts/acme01/flexcloud/images/{id}"))
            .await
            .get("image")
            .cloned()
            .unwrap()
    }

    async fn post_change(&self, id: &str, body: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/-/sim/images/{id}/changes", self.sim.url()))
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// Asks until `check` holds, for at most `PATIENCE`: real time passes at its own pace on a
/// loaded machine, so only the outcome is asserted, never how soon it came.
async fn eventually<F: Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let deadline = Instant::now() + PATIENCE;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within {PATIENCE:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_status_change_shows_once_due_and_not_before() {
    let scenario = fleet()
        .change("101", ImageChange::status(NOW, "DELETED"))
        .change("102", ImageChange::status(LATER, "ACTIVE"));
    let api = Api::start(scenario).await;
    assert_eq!(
        api.statuses("").await,
        pairs(&[("101", "DELETED"), ("102", "SAVING")])
    );
    // Filters see the image as it stands now, not as the file lists it.
    assert_eq!(
        api.statuses("?status=DELETED").await,
        pairs(&[("101", "DELETED")])
    );
    assert!(api.statuses("?status=ACTIVE").await.is_empty());
    assert_eq!(api.image("101").await["status"], "DELETED");
    api.sim.stop().await;
}

#[tokio::test]
async fn a_save_completes_in_real_time() {
    let started = Instant::now();
    let api = Api::start(fleet().change("102", ImageChange::status(SOON, "ACTIVE"))).await;
    let first = api.image("102").await;
    // Only meaningful if the first look came before the change was due, which a loaded
    // machine may not manage.
    if started.elapsed() < SOON {
        assert_eq!(first["status"], "SAVING");
    }
    eventually("102 to turn ACTIVE", || async {
        api.image("102").await["status"] == "ACTIVE"
    })
    .await;
    assert_eq!(
        api.statuses("?status=ACTIVE").await,
        pairs(&[("101", "ACTIVE"), ("102", "ACTIVE")])
    );
    api.sim.stop().await;
}

#[tokio::test]
async fn a_scheduled_image_keeps_its_created_time_across_its_changes() {
    let api = Api::start(fleet().change("102", ImageChange::status(SOON, "ACTIVE"))).await;
    let created = api.image("102").await["created"].clone();
    assert!(created.is_string());
    eventually("102 to turn ACTIVE", || async {
        api.image("102").await["status"] == "ACTIVE"
    })
    .await;
    // Over a second later, so an age counted per request would have moved on by now.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(api.image("102").await["created"], created);
    api.sim.stop().await;
}

#[tokio::test]
async fn an_image_moves_zones() {
    let scenario = fleet()
        .change("101", ImageChange::zones(NOW, &["US-AUSTIN-1"]))
        .change("102", ImageChange::zones(LATER, &["US-AUSTIN-1"]));
    let api = Api::start(scenario).await;
    assert_eq!(
        api.statuses("?zone=US-AUSTIN-1").await,
        pairs(&[("101", "ACTIVE")])
    );
    assert_eq!(
        api.statuses("?zone=US-TAMPA-1").await,
        pairs(&[("102", "SAVING")])
    );
    assert_eq!(api.image("101").await["zones"][0], "US-AUSTIN-1");
    let short = api.json("/accounts/acme01/flexcloud/images").await;
    assert_eq!(short["images"][0]["zones"][0], "US-AUSTIN-1");
    api.sim.stop().await;
}

#[tokio::test]
async fn a_vanished_image_is_in_no_listing_and_not_found_by_id() {
    let scenario = fleet()
        .change("101", ImageChange::vanish(NOW))
        .change("102", ImageChange::vanish(LATER));
    let api = Api::start(scenario).await;
    let only_102 = pairs(&[("102", "SAVING")]);
    assert_eq!(api.statuses("").await, only_102);
    assert!(api.statuses("?type=BASE").await.is_empty());
    assert_eq!(api.statuses("?type=SERVER").await, only_102);
    assert_eq!(api.statuses("?zone=US-TAMPA-1").await, only_102);
    let own = api.json("/images/detail").await;
    assert_eq!(own["images"].as_array().unwrap().len(), 1);
    let short = api.json("/accounts/acme01/flexcloud/images").await;
    assert_eq!(short["images"].as_array().unwrap().len(), 1);
    assert_eq!(short["images"][0]["id"], "102");
    let by_id = api.get("/accounts/acme01/flexcloud/images/101").await;
    assert_eq!(by_id.status(), StatusCode::NOT_FOUND);
    let body: Value = by_id.json().await.unwrap();
    assert!(body["itemNotFound"].is_object());
    api.sim.stop().await;
}

#[tokio::test]
async fn schedule_counts_from_now_and_rejects_unknown_images_and_empty_changes() {
    let api = Api::start(fleet()).await;
    api.sim
        .schedule("101", ImageChange::status(NOW, "DELETED"))
        .unwrap();
    api.sim
        .schedule("102", ImageChange::status(LATER, "ACTIVE"))
        .unwrap();
    assert_eq!(
        api.statuses("").await,
        pairs(&[("101", "DELETED"), ("102", "SAVING")])
    );
    assert!(matches!(
        api.sim.schedule("nope", ImageChange::vanish(NOW)),
        Err(flexcloud_sim::ScenarioError::UnknownImage(id)) if id == "nope"
    ));
    let empty = ImageChange {
        status: None,
        ..ImageChange::status(NOW, "ACTIVE")
    };
    assert!(matches!(
        api.sim.schedule("101", empty),
        Err(flexcloud_sim::ScenarioError::Invalid(_))
    ));
    // Stored on the scenario's clock: at least the time already run since load.
    let stored = api.sim.scenario().images[0].changes.clone();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].status.as_deref(), Some("DELETED"));
    api.sim.stop().await;
}

#[tokio::test]
async fn schedule_after_a_while_counts_from_the_call_not_from_load() {
    let api = Api::start(fleet()).await;
    // Load time lies well behind: a change counted from load would be due at once.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    api.sim
        .schedule(
            "101",
            ImageChange::status(Duration::from_secs(1), "DELETED"),
        )
        .unwrap();
    let stored = api.sim.scenario().images[0].changes[0].after;
    assert!(stored >= Duration::from_millis(2100), "{stored:?}");
    eventually("101 to turn DELETED", || async {
        api.image("101").await["status"] == "DELETED"
    })
    .await;
    api.sim.stop().await;
}

#[tokio::test]
async fn scheduling_an_aged_image_pins_the_created_time_it_shows() {
    let api = Api::start(fleet()).await;
    let unix = |at: SystemTime| at.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let before = unix(SystemTime::now());
    api.sim
        .schedule("102", ImageChange::status(LATER, "ACTIVE"))
        .unwrap();
    let after = unix(SystemTime::now());
    let pinned = api.sim.scenario().images[1].clone();
    assert_eq!(pinned.age, None);
    let shown = api.image("102").await["created"].clone();
    assert_eq!(shown, Value::String(pinned.created.clone()));
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    let created = time::PrimitiveDateTime::parse(&pinned.created, format)
        .unwrap()
        .assume_utc()
        .unix_timestamp();
    // The call's own time less the image's four minutes, cut to whole seconds.
    assert!(
        (before - 240 - 1..=after - 240).contains(&created),
        "created {created}, scheduled from {before} to {after}"
    );
    api.sim.stop().await;
}

#[tokio::test]
async fn update_keeps_the_load_time_and_set_scenario_restarts_it() {
    let api = Api::start(fleet()).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Counted from load, which is over a second ago: due at once.
    api.sim.update(|s| {
        s.images[0]
            .changes
            .push(ImageChange::status(Duration::from_secs(1), "DELETED"));
    });
    assert_eq!(api.image("101").await["status"], "DELETED");
    // A fresh load: the same change lies a second ahead again.
    api.sim
        .set_scenario(fleet().change("101", ImageChange::status(LATER, "DELETED")))
        .unwrap();
    assert_eq!(api.image("101").await["status"], "ACTIVE");
    api.sim.stop().await;
}

#[tokio::test]
async fn the_admin_endpoint_schedules_changes_from_now() {
    let api = Api::start(fleet()).await;
    let ok = api
        .post_change(
            "101",
            r#"{"after": "0s", "status": "DELETED", "zones": ["US-AUSTIN-1"]}"#,
        )
        .await;
    assert_eq!(ok.status(), StatusCode::OK);
    let stored: ImageChange = ok.json().await.unwrap();
    assert_eq!(stored.status.as_deref(), Some("DELETED"));
    assert_eq!(
        api.statuses("?zone=US-AUSTIN-1").await,
        pairs(&[("101", "DELETED")])
    );
    let ok = api
        .post_change("102", r#"{"after": "1h", "vanish": true}"#)
        .await;
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(api.image("102").await["status"], "SAVING");

    let unknown = api
        .post_change("999", r#"{"after": "0s", "vanish": true}"#)
        .await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert!(unknown.text().await.unwrap().contains("999"));
    for bad in [
        r#"{"after": "0s"}"#,
        r#"{"after": "0s", "zones": ["EU-LONDON-1"]}"#,
        r#"{"after": "2h", "status": "ACTIVE"}"#,
        r#"{"after": "0s", "status": "ACTIVE", "colour": "red"}"#,
        r#"{"status": "ACTIVE"}"#,
        "not json",
    ] {
        let answer = api.post_change("102", bad).await;
        assert_eq!(answer.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    // The rejected changes left the image as it was.
    assert_eq!(api.sim.scenario().images[1].changes.len(), 1);
    api.sim.stop().await;
}

#[tokio::test]
async fn the_admin_scenario_carries_changes_both_ways() {
    let api = Api::start(fleet()).await;
    let text = r#"{"users": [{"username": "alice", "password": "s3cret", "accounts": ["*"]}],
        "accounts": [{"id": "acme01", "zones": ["US-TAMPA-1"]}],
        "images": [{"id": "7", "name": "app-02-release", "account": "acme01", "status": "SAVING",
                    "type": "SERVER", "age": "4m", "zones": ["US-TAMPA-1"],
                    "changes": [{"after": "1h", "status": "ACTIVE"}, {"after": "0s", "status": "SAVING"}]}]}"#;
    let put = api
        .http
        .put(format!("{}/-/sim/scenario", api.sim.url()))
        .body(text)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::NO_CONTENT);
    let shown: Value = api
        .http
        .get(format!("{}/-/sim/scenario", api.sim.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // Sorted by `after` on load.
    assert_eq!(
        shown["images"][0]["changes"],
        serde_json::json!([{"after": "0s", "status": "SAVING"}, {"after": "1h", "status": "ACTIVE"}])
    );
    assert_eq!(api.image("7").await["status"], "SAVING");
    api.sim.stop().await;
}

#[test]
fn the_demo_fleet_completes_a_save_hangs_a_deletion_and_loses_an_image() {
    let demo = Scenario::from_json(flexcloud_sim::DEMO_SCENARIO).unwrap();
    let image = |id: &str| demo.images.iter().find(|i| i.id == id).unwrap().clone();
    // The demo's exporter cycles every 15 s: a save that ends after `after` shows by the
    // cycle after it, and a first look at the demo should see one within two minutes.
    let cycle = Duration::from_secs(15);
    let saved = image("2003");
    assert_eq!(
        (saved.status.as_str(), saved.age),
        ("SAVING", Some(Duration::from_secs(240)))
    );
    assert_eq!(
        saved.changes,
        [ImageChange::status(Duration::from_secs(40), "ACTIVE")]
    );
    assert!(saved.changes[0].after + cycle <= Duration::from_secs(120));
    let hung = image("2004");
    assert_eq!(hung.status, "ACTIVE");
    assert_eq!(
        hung.changes,
        [ImageChange::status(Duration::from_secs(20), "DELETED")]
    );
    let gone = image("2005");
    assert_eq!(
        gone.changes,
        [
            ImageChange::status(Duration::from_secs(30), "DELETED"),
            ImageChange::vanish(Duration::from_secs(60)),
        ]
    );
    // What the demo promised before stays: one image stuck in SAVING for over three hours.
    let stuck: Vec<_> = demo
        .images
        .iter()
        .filter(|i| i.status == "SAVING" && i.age > Some(Duration::from_secs(3 * 3600)))
        .map(|i| i.id.as_str())
        .collect();
    assert_eq!(stuck, ["2001"]);
}
