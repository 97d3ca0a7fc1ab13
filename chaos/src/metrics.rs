//! The agent's `/metrics`, in the Prometheus text format through
//! `prometheus-client`: Toxiproxy's per-proxy byte counters (same names and
//! labels as Toxiproxy's own exporter) and seismo's faults applied per toxic.
//!
//! The byte counters stay plain atomics on the proxies' hot path; a scrape
//! reads them through a [`Collector`], so a deleted proxy's series go with it.
//! Faults are the counter family the fault sink increments (`faults`).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::registry::Registry;

use crate::agent::Agent;
use crate::faults::FaultCounts;
use crate::model::Stream;

/// `Content-Type` of the answer: the Prometheus text format, as Toxiproxy serves it.
pub(crate) const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// One proxy's byte counters as a scrape found them.
#[derive(Debug)]
struct ProxyBytes {
    name: String,
    listen: String,
    upstream: String,
    /// (direction, received, sent).
    directions: [(&'static str, u64, u64); 2],
}

/// Every proxy's byte counters, read at scrape time.
#[derive(Debug)]
struct ProxyBytesCollector(Vec<ProxyBytes>);

impl Collector for ProxyBytesCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for (metric, help, received) in [
            ("toxiproxy_proxy_received_bytes", "Bytes the proxy read, per direction.", true),
            ("toxiproxy_proxy_sent_bytes", "Bytes the proxy wrote, per direction.", false),
        ] {
            let counter_type = ConstCounter::new(0u64).metric_type();
            let mut family = encoder.encode_descriptor(metric, help, None, counter_type)?;
            for p in &self.0 {
                for (direction, r, s) in p.directions {
                    let labels = [
                        ("direction", direction),
                        ("listener", p.listen.as_str()),
                        ("proxy", p.name.as_str()),
                        ("upstream", p.upstream.as_str()),
                    ];
                    ConstCounter::new(if received { r } else { s }).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        Ok(())
    }
}

/// The whole `/metrics` answer.
pub(crate) fn render(agent: &Agent) -> String {
    let proxies = agent
        .proxies
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .values()
        .map(|p| ProxyBytes {
            name: p.name.clone(),
            listen: p.listen.clone(),
            upstream: p.upstream.clone(),
            directions: [Stream::Upstream, Stream::Downstream].map(|direction| {
                let (received, sent) = p.stats.counters(direction);
                (direction.as_str(), received.load(Ordering::Relaxed), sent.load(Ordering::Relaxed))
            }),
        })
        .collect();
    encode(&registry(proxies, agent.faults.counts().clone()))
}

/// Everything `/metrics` shows, as of now.
fn registry(proxies: Vec<ProxyBytes>, faults: FaultCounts) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(ProxyBytesCollector(proxies)));
    registry.register("seismo_chaos_faults", "Requests, connections and processes a fault hit", faults);
    registry
}

fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, registry) {
        // Writing into a String cannot fail; say so rather than answer half a page.
        let _ = writeln!(out, "# encoding failed: {e}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::FaultLabels;

    fn labels(proxy: &str, toxic: &str) -> FaultLabels {
        FaultLabels { proxy: proxy.into(), toxic: toxic.into(), kind: "latency" }
    }

    #[test]
    fn counters_are_the_text_toxiproxy_and_the_tests_read() {
        let faults = FaultCounts::default();
        faults.get_or_create(&labels("pg", "slow")).inc_by(3);
        let bytes = vec![ProxyBytes {
            name: "pg".into(),
            listen: "127.0.0.1:1".into(),
            upstream: "db:5432".into(),
            directions: [("upstream", 7, 5), ("downstream", 5, 7)],
        }];
        let text = encode(&registry(bytes, faults));
        for line in [
            "# HELP toxiproxy_proxy_received_bytes_total Bytes the proxy read, per direction.",
            "# TYPE toxiproxy_proxy_received_bytes_total counter",
            "toxiproxy_proxy_received_bytes_total{direction=\"upstream\",listener=\"127.0.0.1:1\",proxy=\"pg\",upstream=\"db:5432\"} 7",
            "toxiproxy_proxy_sent_bytes_total{direction=\"downstream\",listener=\"127.0.0.1:1\",proxy=\"pg\",upstream=\"db:5432\"} 7",
            "# HELP seismo_chaos_faults_total Requests, connections and processes a fault hit.",
            "# TYPE seismo_chaos_faults_total counter",
            "seismo_chaos_faults_total{proxy=\"pg\",toxic=\"slow\",type=\"latency\"} 3",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} missing from\n{text}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        let faults = FaultCounts::default();
        faults.get_or_create(&labels("a\"b", "c\\d")).inc();
        let text = encode(&registry(Vec::new(), faults));
        assert!(text.contains(r#"seismo_chaos_faults_total{proxy="a\"b",toxic="c\\d",type="latency"} 1"#), "{text}");
    }
}
