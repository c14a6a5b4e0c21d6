//! A small metrics registry rendered in the Prometheus text format (`GET /metrics`). Each
//! application owns one (no global recorder), so several apps in one test process keep their
//! figures apart. Families are declared in [`FAMILIES`] with their type and help.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// Kind of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Every family ggprov exports: name, kind, help.
pub const FAMILIES: &[(&str, Kind, &str)] = &[
    ("ggprov_http_requests_total", Kind::Counter, "HTTP requests by route template, method and status."),
    ("ggprov_http_request_duration_seconds", Kind::Histogram, "HTTP request latency by route template and method."),
    ("ggprov_jobs_total", Kind::Counter, "Queue jobs handled by kind and outcome (succeeded, retried, dead_lettered)."),
    (
        "ggprov_items_total",
        Kind::Counter,
        "Task items in handled jobs by job kind and outcome (processed, retried, failed).",
    ),
    ("ggprov_queue_jobs", Kind::Gauge, "Jobs on the work queue by state (visible, in_flight, dead)."),
    ("ggprov_queue_oldest_job_age_seconds", Kind::Gauge, "Age of the oldest job waiting on the work queue."),
    (
        "ggprov_cloud_calls_total",
        Kind::Counter,
        "Workers' IoT and Greengrass calls by API and outcome (ok, throttled, error).",
    ),
    ("ggprov_outbox_backlog", Kind::Gauge, "Events written but not yet published."),
    (
        "ggprov_aws_calls_total",
        Kind::Counter,
        "DynamoDB, SQS and S3 calls this process made, by service and operation (one per call, its SDK retries included).",
    ),
];

/// Upper bounds of the latency histogram buckets, in seconds.
const BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

type Labels = Vec<(&'static str, String)>;

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
struct Registry {
    values: BTreeMap<(&'static str, Labels), f64>,
    histograms: BTreeMap<(&'static str, Labels), Histogram>,
}

/// The registry.
#[derive(Default)]
pub struct Metrics {
    registry: Mutex<Registry>,
}

fn labels(pairs: &[(&'static str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
}

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn render_labels(labels: &Labels, extra: Option<(&str, String)>) -> String {
    let mut parts: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
    if let Some((k, v)) = extra {
        parts.push(format!("{k}=\"{v}\""));
    }
    if parts.is_empty() { String::new() } else { format!("{{{}}}", parts.join(",")) }
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `by` to a counter.
    pub fn inc(&self, name: &'static str, pairs: &[(&'static str, &str)], by: f64) {
        let mut registry = self.registry.lock().expect("metrics lock");
        *registry.values.entry((name, labels(pairs))).or_default() += by;
    }

    /// Sets a gauge.
    pub fn set(&self, name: &'static str, pairs: &[(&'static str, &str)], value: f64) {
        self.registry.lock().expect("metrics lock").values.insert((name, labels(pairs)), value);
    }

    /// Records one observation (seconds) in a histogram.
    pub fn observe(&self, name: &'static str, pairs: &[(&'static str, &str)], seconds: f64) {
        let mut registry = self.registry.lock().expect("metrics lock");
        let histogram = registry.histograms.entry((name, labels(pairs))).or_default();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                histogram.counts[i] += 1;
            }
        }
        histogram.count += 1;
        histogram.sum += seconds;
    }

    /// The Prometheus text exposition of every family (declared families always appear).
    pub fn render(&self) -> String {
        let registry = self.registry.lock().expect("metrics lock");
        let mut text = String::new();
        for (name, kind, help) in FAMILIES {
            let kind_text = match kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
                Kind::Histogram => "histogram",
            };
            let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} {kind_text}");
            if *kind == Kind::Histogram {
                for ((_, labels), h) in registry.histograms.iter().filter(|((n, _), _)| n == name) {
                    for (i, bound) in BUCKETS.iter().enumerate() {
                        let _ = writeln!(
                            text,
                            "{name}_bucket{} {}",
                            render_labels(labels, Some(("le", bound.to_string()))),
                            h.counts[i]
                        );
                    }
                    let _ = writeln!(
                        text,
                        "{name}_bucket{} {}",
                        render_labels(labels, Some(("le", "+Inf".into()))),
                        h.count
                    );
                    let _ = writeln!(text, "{name}_sum{} {}", render_labels(labels, None), h.sum);
                    let _ = writeln!(text, "{name}_count{} {}", render_labels(labels, None), h.count);
                }
            } else {
                for ((_, labels), value) in registry.values.iter().filter(|((n, _), _)| n == name) {
                    let _ = writeln!(text, "{name}{} {value}", render_labels(labels, None));
                }
            }
        }
        text
    }
}

/// Calls a backend made to its store, queue and bucket services by `(service, operation)`,
/// counted by the backend's clients and rendered as `ggprov_aws_calls_total`. Owned by the
/// backend that counts, like [`Metrics`] by its application.
#[derive(Debug, Default)]
pub struct StoreCalls(Mutex<BTreeMap<(String, String), u64>>);

impl StoreCalls {
    pub fn record(&self, service: &str, operation: &str) {
        let mut counts = self.0.lock().expect("store calls lock");
        *counts.entry((service.to_owned(), operation.to_owned())).or_default() += 1;
    }

    pub fn snapshot(&self) -> BTreeMap<(String, String), u64> {
        self.0.lock().expect("store calls lock").clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_and_histograms_in_the_text_format() {
        let metrics = Metrics::new();
        metrics.inc("ggprov_http_requests_total", &[("route", "/templates/{name}"), ("status", "200")], 1.0);
        metrics.inc("ggprov_http_requests_total", &[("route", "/templates/{name}"), ("status", "200")], 1.0);
        metrics.set("ggprov_outbox_backlog", &[], 3.0);
        metrics.observe("ggprov_http_request_duration_seconds", &[("route", "/x\"y")], 0.02);
        let text = metrics.render();
        assert!(text.contains("# TYPE ggprov_http_requests_total counter\n"), "{text}");
        assert!(text.contains("ggprov_http_requests_total{route=\"/templates/{name}\",status=\"200\"} 2\n"), "{text}");
        assert!(text.contains("ggprov_outbox_backlog 3\n"), "{text}");
        assert!(
            text.contains("ggprov_http_request_duration_seconds_bucket{route=\"/x\\\"y\",le=\"0.01\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("ggprov_http_request_duration_seconds_bucket{route=\"/x\\\"y\",le=\"0.025\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("ggprov_http_request_duration_seconds_count{route=\"/x\\\"y\"} 1\n"), "{text}");
        assert!(
            text.contains("# TYPE ggprov_cloud_calls_total counter\n"),
            "declared families appear before any value"
        );
    }
}
