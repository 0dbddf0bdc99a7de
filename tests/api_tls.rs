//! The client's TLS settings against an HTTPS API: the system roots alone refuse a private
//! CA, `FLEXCLOUD_CA_FILE` trusts it, `FLEXCLOUD_TLS_INSECURE_SKIP_VERIFY` skips the check.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;

use axum::Router;
use axum::routing::get;
use common::Metrics;
use flexcloud_exporter::web::WebConfig;
use tokio::net::TcpListener;

/// A private CA and a certificate it signed for 127.0.0.1, in a fresh folder.
struct Pki {
    dir: PathBuf,
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn pki(name: &str) -> Pki {
    let dir = std::env::temp_dir().join(format!("flexcloud-api-tls-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("api.crt"), cert.pem()).unwrap();
    std::fs::write(dir.join("api.key"), key.serialize_pem()).unwrap();
    std::fs::write(
        dir.join("web.yml"),
        "tls_server_config:\n  cert_file: api.crt\n  key_file: api.key\n",
    )
    .unwrap();
    Pki { dir }
}

/// A minimal HTTPS FlexCloud API: one account, one zone, one image.
async fn https_api(pki: &Pki) -> String {
    let web = WebConfig::load(&pki.dir.join("web.yml")).unwrap();
    let router = Router::new()
        .route("/accounts/acme/flexcloud/zone", get(|| async { axum::Json(serde_json::json!({"acme": [{"zone": "Z"}]})) }))
        .route(
            "/accounts/acme/flexcloud/images/detail",
            get(|| async { axum::Json(serde_json::json!({"images": [{"id": "1", "name": "n", "status": "ACTIVE", "created": "2012-01-01T00:00:00"}]})) }),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(flexcloud_exporter::server::serve(
        listener,
        router,
        web.tls,
        flexcloud_exporter::server::Limits::default(),
        std::sync::Arc::default(),
        std::future::pending(),
    ));
    format!("https://127.0.0.1:{}", address.port())
}

async fn probe(url: &str, extra: &[(&str, &str)]) -> Metrics {
    let mut settings = vec![("FLEXCLOUD_ACCOUNTS", "acme"), ("FLEXCLOUD_TIMEOUT", "2s")];
    settings.extend_from_slice(extra);
    let config = common::config(url, &settings);
    common::one_cycle(config).await
}

const ZONE: [(&str, &str); 2] = [("account_id", "acme"), ("zone_id", "Z")];

#[tokio::test]
async fn a_private_ca_is_refused_unless_trusted_by_file() {
    let pki = pki("ca");
    let url = https_api(&pki).await;
    let refused = probe(&url, &[]).await;
    let step = [("account_id", "acme"), ("step", "zones")];
    assert_eq!(refused.value("flexcloud_discovery_success", &step), 0.0);
    assert_eq!(
        refused.value("flexcloud_discovery_http_status_code", &step),
        0.0
    );

    let ca = pki.dir.join("ca.pem");
    let trusted = probe(&url, &[("FLEXCLOUD_CA_FILE", ca.to_str().unwrap())]).await;
    assert_eq!(trusted.value("flexcloud_probe_success", &ZONE), 1.0);
    assert_eq!(
        trusted.value(
            "flexcloud_images",
            &[
                ("account_id", "acme"),
                ("zone_id", "Z"),
                ("status", "ACTIVE"),
                ("image_type", "BASE")
            ]
        ),
        1.0
    );
}

#[tokio::test]
async fn skip_verify_accepts_any_certificate() {
    let pki = pki("skip");
    let url = https_api(&pki).await;
    let m = probe(&url, &[("FLEXCLOUD_TLS_INSECURE_SKIP_VERIFY", "true")]).await;
    assert_eq!(m.value("flexcloud_probe_success", &ZONE), 1.0);
}

#[test]
fn a_ca_file_without_certificates_is_a_setting_error() {
    let pki = pki("bad");
    let bogus = pki.dir.join("bogus.pem");
    std::fs::write(&bogus, "not a certificate\n").unwrap();
    let config = common::config(
        "https://127.0.0.1:9",
        &[("FLEXCLOUD_CA_FILE", bogus.to_str().unwrap())],
    );
    let err = flexcloud_exporter::Exporter::new(config).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().starts_with("FLEXCLOUD_CA_FILE"), "{err}");
}
