//! The metrics read at scrape time: the process's own (`process_*`, from `/proc`), the
//! endpoint's counter and whether the files read again while running loaded.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::UNIX_EPOCH;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::{Registry, Unit};

use crate::api::ApiClient;
use crate::reload::ReloadStatus;

/// One reading of `/proc/self`. A scrape encodes it in both formats, so `/proc` is read
/// once per scrape, not once per format: it is most of a scrape's fixed cost.
#[derive(Debug, Default, Clone, Copy)]
struct ProcessSample {
    cpu_seconds: Option<f64>,
    resident_bytes: Option<f64>,
    virtual_bytes: Option<f64>,
    start_time: Option<f64>,
    open_fds: Option<i64>,
    max_fds: Option<i64>,
}

impl ProcessSample {
    fn read() -> Self {
        let mut sample = ProcessSample::default();
        let Ok(me) = procfs::process::Process::myself() else {
            return sample;
        };
        let ticks = procfs::ticks_per_second() as f64;
        if let Ok(stat) = me.stat() {
            sample.cpu_seconds = Some((stat.utime + stat.stime) as f64 / ticks);
            sample.resident_bytes = Some((stat.rss * procfs::page_size()) as f64);
            sample.virtual_bytes = Some(stat.vsize as f64);
            sample.start_time = procfs::boot_time_secs()
                .ok()
                .map(|boot| boot as f64 + stat.starttime as f64 / ticks);
        }
        sample.open_fds = me.fd_count().ok().map(|n| n as i64);
        sample.max_fds =
            me.limits()
                .ok()
                .and_then(|limits| match limits.max_open_files.soft_limit {
                    procfs::process::LimitValue::Value(max) => Some(max as i64),
                    procfs::process::LimitValue::Unlimited => None,
                });
        sample
    }
}

impl prometheus_client::collector::Collector for ProcessSample {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(cpu) = self.cpu_seconds {
            let cpu = ConstCounter::new(cpu);
            let e = encoder.encode_descriptor(
                "process_cpu",
                "Total user and system CPU time spent in seconds",
                Some(&Unit::Seconds),
                cpu.metric_type(),
            )?;
            cpu.encode(e)?;
        }
        let gauges = [
            (
                self.resident_bytes,
                "process_resident_memory",
                "Resident memory size in bytes",
                Unit::Bytes,
            ),
            (
                self.virtual_bytes,
                "process_virtual_memory",
                "Virtual memory size in bytes",
                Unit::Bytes,
            ),
            (
                self.start_time,
                "process_start_time",
                "Start time of the process since unix epoch in seconds",
                Unit::Seconds,
            ),
        ];
        for (value, name, help, unit) in gauges {
            if let Some(value) = value {
                let gauge = ConstGauge::new(value);
                let e = encoder.encode_descriptor(name, help, Some(&unit), gauge.metric_type())?;
                gauge.encode(e)?;
            }
        }
        let counts = [
            (
                self.open_fds,
                "process_open_fds",
                "Number of open file descriptors",
            ),
            (
                self.max_fds,
                "process_max_fds",
                "Maximum number of open file descriptors",
            ),
        ];
        for (value, name, help) in counts {
            if let Some(value) = value {
                let gauge = ConstGauge::new(value);
                let e = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
                gauge.encode(e)?;
            }
        }
        Ok(())
    }
}

/// Counters of the endpoint itself. Unlike the cycle's metrics they change between cycles,
/// so they are encoded at scrape time with the process metrics.
#[derive(Debug, Default)]
pub struct EndpointMetrics {
    connections_refused: Counter,
    reload: Arc<ReloadStatus>,
    /// The client whose pacing (concurrency in force, 429s) changes within a cycle.
    client: Option<Arc<ApiClient>>,
}

impl EndpointMetrics {
    /// With the status of the files the exporter reads again while running.
    pub fn with_reload_status(reload: Arc<ReloadStatus>) -> Self {
        EndpointMetrics {
            connections_refused: Counter::default(),
            reload,
            client: None,
        }
    }

    /// And with the pacing of `client`.
    pub fn with_client(self, client: Arc<ApiClient>) -> Self {
        EndpointMetrics {
            client: Some(client),
            ..self
        }
    }

    /// A connection was closed at once because the connection limit was reached.
    pub fn connection_refused(&self) {
        self.connections_refused.inc();
    }
}

/// The metrics read at scrape time (the process's, and the endpoint's when there is one) in
/// the classic text format and in OpenMetrics (with `# EOF`).
pub fn encode_scrape_time(endpoint: Option<&EndpointMetrics>) -> (String, String) {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(ProcessSample::read()));
    if let Some(endpoint) = endpoint {
        registry.register(
            "flexcloud_web_connections_rejected",
            "Connections to the endpoint closed at once because FLEXCLOUD_WEB_MAX_CONNECTIONS were open",
            endpoint.connections_refused.clone(),
        );
        let successful: Gauge = Gauge::default();
        successful.set(i64::from(endpoint.reload.successful()));
        registry.register(
            "flexcloud_config_last_reload_successful",
            "1 when the latest check of the password file and the web config file loaded them or found them unchanged; 0 while one cannot be read or parsed (its previous content stays in force)",
            successful,
        );
        let at: Gauge<f64, AtomicU64> = Gauge::default();
        at.set(
            endpoint
                .reload
                .last_success()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        );
        registry.register_with_unit(
            "flexcloud_config_last_reload_success_timestamp",
            "Unix time the configuration files were last loaded: at start, or when one changed",
            Unit::Seconds,
            at,
        );
    }
    if let Some(client) = endpoint.and_then(|e| e.client.as_ref()) {
        let limit: Gauge = Gauge::default();
        limit.set(i64::try_from(client.concurrency_limit()).unwrap_or(i64::MAX));
        registry.register(
            "flexcloud_api_concurrency_limit",
            "API requests the exporter may have in flight now: FLEXCLOUD_CONCURRENCY, halved by each 429 and grown back by one per answer",
            limit,
        );
        let throttled: Counter = Counter::default();
        throttled.inc_by(client.throttled_total());
        registry.register(
            "flexcloud_api_throttled",
            "429 answers from the API; each pauses every request for its Retry-After (60s at most)",
            throttled,
        );
    }
    let mut text = String::new();
    let mut openmetrics = String::new();
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &registry);
    let _ = prometheus_client::encoding::text::encode(&mut openmetrics, &registry);
    (text, openmetrics)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(exposition: &str) -> Vec<&str> {
        exposition
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once(' ').map(|(name, _)| name))
            .collect()
    }

    #[test]
    fn scrape_time_metrics_are_the_standard_process_series_and_the_endpoints_in_both_formats() {
        let endpoint = EndpointMetrics::default();
        endpoint.connection_refused();
        let (text, openmetrics) = encode_scrape_time(Some(&endpoint));
        // A registry writes its own metrics before those of its collectors.
        let expected = [
            "flexcloud_web_connections_rejected_total",
            "flexcloud_config_last_reload_successful",
            "flexcloud_config_last_reload_success_timestamp_seconds",
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_virtual_memory_bytes",
            "process_start_time_seconds",
            "process_open_fds",
            "process_max_fds",
        ];
        assert_eq!(names(&text), expected);
        assert_eq!(names(&openmetrics), expected);
        assert!(openmetrics.ends_with("# EOF\n"));
        assert!(text.contains("# TYPE process_cpu_seconds_total counter"));
        assert!(text.contains("flexcloud_web_connections_rejected_total 1\n"));
        assert!(text.contains("flexcloud_config_last_reload_successful 1\n"));
        endpoint.reload.failed(crate::reload::Source::WebConfigFile);
        let (text, _) = encode_scrape_time(Some(&endpoint));
        assert!(text.contains("flexcloud_config_last_reload_successful 0\n"));
    }
}
