//! TLS for the endpoint: the web config's `tls_server_config` mapped onto rustls with ring.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::crypto::ring as ring_provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, SupportedCipherSuite, SupportedProtocolVersion};

use super::config::{RawTls, Source, WebConfigError};

impl Source {
    pub(super) fn tls(&self, raw: RawTls) -> Result<ServerConfig, WebConfigError> {
        match raw.client_auth_type.as_deref() {
            None | Some("" | "NoClientCert") => {}
            Some(other) => {
                return Err(self.invalid(
                    "tls_server_config.client_auth_type",
                    format!(
                        "{other} is not supported: client certificates are not implemented; only NoClientCert"
                    ),
                ));
            }
        }
        for (field, set) in [
            ("client_ca_file", raw.client_ca_file.is_some()),
            ("client_ca", raw.client_ca.is_some()),
            ("client_allowed_sans", raw.client_allowed_sans.is_some()),
        ] {
            if set {
                return Err(self.invalid(
                    format!("tls_server_config.{field}"),
                    "is not supported: client certificates are not implemented",
                ));
            }
        }
        // Settings first, files last: a mistake in the file itself is reported before any
        // certificate is read.
        let versions = self.versions(raw.min_version.as_deref(), raw.max_version.as_deref())?;
        let mut provider = ring_provider::default_provider();
        if let Some(names) = &raw.cipher_suites {
            provider.cipher_suites = self.cipher_suites(names)?;
        }
        if let Some(names) = &raw.curve_preferences {
            provider.kx_groups = self.curves(names)?;
        }
        let cert = self.pem_source(
            "cert_file",
            raw.cert_file.as_deref(),
            "cert",
            raw.cert.as_deref(),
        )?;
        let key = self.pem_source(
            "key_file",
            raw.key_file.as_deref(),
            "key",
            raw.key.as_deref(),
        )?;
        let certs = self.certificates(cert)?;
        let key = self.private_key(key)?;
        let mut config = ServerConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&versions)
            .map_err(|source| self.tls_error("tls_server_config", source))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|source| match source {
                // rustls says only "KeyMismatch"; say which files disagree.
                rustls::Error::InconsistentKeys(_) => self.invalid(
                    "tls_server_config.key_file",
                    "the private key does not belong to the certificate of cert_file",
                ),
                other => self.tls_error("tls_server_config.key_file", other),
            })?;
        // exporter-toolkit's default, and the meaning of a `cipher_suites` order.
        config.ignore_client_order = raw.prefer_server_cipher_suites.unwrap_or(true);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }

    fn tls_error(&self, field: &'static str, source: rustls::Error) -> WebConfigError {
        WebConfigError::Tls {
            path: self.path.clone(),
            field,
            source,
        }
    }

    /// Where the PEM of `cert_file`/`cert` (or `key_file`/`key`) comes from: exactly one of
    /// the two must be set.
    fn pem_source<'a>(
        &self,
        file_field: &'static str,
        file: Option<&str>,
        inline_field: &'static str,
        inline: Option<&'a str>,
    ) -> Result<PemSource<'a>, WebConfigError> {
        match (
            file.filter(|f| !f.is_empty()),
            inline.filter(|i| !i.is_empty()),
        ) {
            (Some(_), Some(_)) => Err(self.invalid(
                format!("tls_server_config.{file_field}"),
                format!("set either {file_field} or {inline_field}, not both"),
            )),
            (Some(name), None) => Ok(PemSource::File {
                field: file_field,
                path: self.dir.join(name),
            }),
            (None, Some(text)) => Ok(PemSource::Inline {
                field: inline_field,
                text,
            }),
            (None, None) => Err(self.invalid(
                format!("tls_server_config.{file_field}"),
                format!("is required when TLS is configured (or the inline {inline_field})"),
            )),
        }
    }

    /// The PEM bytes, the field they come from and a description for messages.
    fn read_pem(&self, source: PemSource<'_>) -> Result<(Vec<u8>, String, String), WebConfigError> {
        match source {
            PemSource::File { field, path } => {
                let bytes = std::fs::read(&path).map_err(|source| WebConfigError::File {
                    path: self.path.clone(),
                    field,
                    file: path.display().to_string(),
                    source,
                })?;
                Ok((
                    bytes,
                    format!("tls_server_config.{field}"),
                    path.display().to_string(),
                ))
            }
            PemSource::Inline { field, text } => Ok((
                text.as_bytes().to_vec(),
                format!("tls_server_config.{field}"),
                "the text".to_string(),
            )),
        }
    }

    fn certificates(
        &self,
        source: PemSource<'_>,
    ) -> Result<Vec<CertificateDer<'static>>, WebConfigError> {
        let (pem, field, origin) = self.read_pem(source)?;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.invalid(field.clone(), format!("{origin}: {e}")))?;
        if certs.is_empty() {
            return Err(self.invalid(field, format!("{origin} holds no PEM CERTIFICATE block")));
        }
        Ok(certs)
    }

    fn private_key(&self, source: PemSource<'_>) -> Result<PrivateKeyDer<'static>, WebConfigError> {
        let (pem, field, origin) = self.read_pem(source)?;
        PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
            let problem = match e {
                rustls::pki_types::pem::Error::NoItemsFound => {
                    format!("{origin} holds no PEM private key")
                }
                other => format!("{origin}: {other}"),
            };
            self.invalid(field, problem)
        })
    }

    fn versions(
        &self,
        min: Option<&str>,
        max: Option<&str>,
    ) -> Result<Vec<&'static SupportedProtocolVersion>, WebConfigError> {
        let min = self.version("min_version", min.unwrap_or("TLS12"))?;
        let max = self.version("max_version", max.unwrap_or("TLS13"))?;
        if min > max {
            return Err(self.invalid("tls_server_config.min_version", "is above max_version"));
        }
        Ok(
            [(12, &rustls::version::TLS12), (13, &rustls::version::TLS13)]
                .into_iter()
                .filter(|(v, _)| (min..=max).contains(v))
                .map(|(_, version)| version)
                .collect(),
        )
    }

    /// The minor version number of a TLS version name.
    fn version(&self, field: &str, name: &str) -> Result<u8, WebConfigError> {
        match name {
            "TLS12" => Ok(12),
            "TLS13" => Ok(13),
            "TLS10" | "TLS11" => Err(self.invalid(
                format!("tls_server_config.{field}"),
                format!("{name} is not supported: TLS12 and TLS13 only"),
            )),
            other => Err(self.invalid(
                format!("tls_server_config.{field}"),
                format!("unknown TLS version {other:?}; one of TLS12, TLS13"),
            )),
        }
    }

    /// Go's cipher suite names mapped onto rustls'. As in Go, the list restricts TLS 1.2 only:
    /// TLS 1.3 suites are always on, and naming one is accepted.
    fn cipher_suites(&self, names: &[String]) -> Result<Vec<SupportedCipherSuite>, WebConfigError> {
        use ring_provider::cipher_suite as cs;
        let tls12 = [
            (
                "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
                cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            ),
            (
                "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
                cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            ),
            (
                "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
                cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            ),
            (
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            ),
            (
                "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
                cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            ),
            (
                "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
                cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
            ),
        ];
        let tls13_names = [
            "TLS_AES_128_GCM_SHA256",
            "TLS_AES_256_GCM_SHA384",
            "TLS_CHACHA20_POLY1305_SHA256",
        ];
        let mut suites = vec![
            cs::TLS13_AES_256_GCM_SHA384,
            cs::TLS13_AES_128_GCM_SHA256,
            cs::TLS13_CHACHA20_POLY1305_SHA256,
        ];
        for name in names {
            if tls13_names.contains(&name.as_str()) {
                continue;
            }
            let Some((_, suite)) = tls12.iter().find(|(n, _)| n == name) else {
                let known: Vec<&str> = tls12.iter().map(|(n, _)| *n).collect();
                return Err(self.invalid(
                    "tls_server_config.cipher_suites",
                    format!(
                        "{name} is not supported; supported TLS 1.2 suites: {}",
                        known.join(", ")
                    ),
                ));
            };
            if !suites.contains(suite) {
                suites.push(*suite);
            }
        }
        Ok(suites)
    }

    fn curves(
        &self,
        names: &[String],
    ) -> Result<Vec<&'static dyn rustls::crypto::SupportedKxGroup>, WebConfigError> {
        use ring_provider::kx_group;
        let known: [(&str, &'static dyn rustls::crypto::SupportedKxGroup); 3] = [
            ("X25519", kx_group::X25519),
            ("CurveP256", kx_group::SECP256R1),
            ("CurveP384", kx_group::SECP384R1),
        ];
        let mut groups: Vec<&'static dyn rustls::crypto::SupportedKxGroup> = Vec::new();
        for name in names {
            let Some((_, group)) = known.iter().find(|(n, _)| n == name) else {
                return Err(self.invalid(
                    "tls_server_config.curve_preferences",
                    format!("{name} is not supported; one of X25519, CurveP256, CurveP384"),
                ));
            };
            if !groups.iter().any(|g| g.name() == group.name()) {
                groups.push(*group);
            }
        }
        if groups.is_empty() {
            return Err(self.invalid(
                "tls_server_config.curve_preferences",
                "is empty; leave it out for the defaults",
            ));
        }
        Ok(groups)
    }
}

/// Where a certificate or key comes from.
enum PemSource<'a> {
    File { field: &'static str, path: PathBuf },
    Inline { field: &'static str, text: &'a str },
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::WebConfig;

    #[test]
    fn tls_options_map_onto_rustls() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let text = format!(
            "tls_server_config:\n  cert: |\n{}  key: |\n{}  min_version: TLS12\n  max_version: TLS12\n  cipher_suites: [TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, TLS_AES_128_GCM_SHA256]\n  curve_preferences: [CurveP384, X25519]\n  prefer_server_cipher_suites: false\n",
            indent(&cert.pem()),
            indent(&key.serialize_pem()),
        );
        let web = WebConfig::parse(&text, Path::new("web.yml")).unwrap();
        let tls = web.tls.unwrap();
        assert!(!tls.ignore_client_order);
        assert_eq!(tls.alpn_protocols, [b"http/1.1".to_vec()]);
        let provider = tls.crypto_provider();
        let suites: Vec<String> = provider
            .cipher_suites
            .iter()
            .map(|s| format!("{:?}", s.suite()))
            .collect();
        assert_eq!(
            suites,
            [
                "TLS13_AES_256_GCM_SHA384",
                "TLS13_AES_128_GCM_SHA256",
                "TLS13_CHACHA20_POLY1305_SHA256",
                "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
            ]
        );
        let groups: Vec<String> = provider
            .kx_groups
            .iter()
            .map(|g| format!("{:?}", g.name()))
            .collect();
        assert_eq!(groups, ["secp384r1", "X25519"]);
    }

    fn indent(pem: &str) -> String {
        pem.lines().map(|line| format!("    {line}\n")).collect()
    }
}
