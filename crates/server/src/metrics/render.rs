//! The counters in the Prometheus text format, written by
//! `prometheus-client` from a snapshot of the shared block.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use hftp_proto::Status;

use super::shared::Histogram;
use super::{Metrics, StorageOp, COMMANDS};

/// The Prometheus text of every counter.
pub fn render(metrics: &'static Metrics) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Snapshot(metrics)));
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &registry);
    text
}

struct Snapshot(&'static Metrics);

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Snapshot")
    }
}

type Result = std::result::Result<(), std::fmt::Error>;

fn counter(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> Result {
    let m = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(value).encode(m)
}

fn histogram<L: prometheus_client::encoding::EncodeLabelSet>(
    m: &mut prometheus_client::encoding::MetricEncoder,
    labels: &L,
    h: &Histogram,
) -> Result {
    let (sum, count, buckets) = h.snapshot();
    m.encode_family(labels)?
        .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result {
        let m = self.0;
        let c = m.counters;
        let model = [("model", m.model)];
        let mut info = encoder.encode_descriptor(
            "hftp_model",
            "The concurrency model in use.",
            None,
            MetricType::Info,
        )?;
        info.encode_info(&model)?;
        let open = encoder.encode_descriptor(
            "hftp_connections_open",
            "Connections open now.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(c.open.get()).encode(open)?;
        counter(
            &mut encoder,
            "hftp_connections_accepted",
            "Connections admitted.",
            c.accepted.get(),
        )?;
        let mut refused = encoder.encode_descriptor(
            "hftp_connections_refused",
            "Connections closed at once by a limit.",
            None,
            MetricType::Counter,
        )?;
        for (limit, n) in [
            ("max_connections", c.refused_max_connections.get()),
            ("max_per_ip", c.refused_max_per_ip.get()),
            ("proxy_header", c.refused_proxy_header.get()),
            ("address", c.refused_address.get()),
            ("tls_handshake", c.refused_tls_handshake.get()),
        ] {
            ConstCounter::new(n).encode(refused.encode_family(&[("limit", limit)])?)?;
        }
        let mut requests = encoder.encode_descriptor(
            "hftp_requests",
            "Requests answered, by command and status code.",
            None,
            MetricType::Counter,
        )?;
        for (command, row) in COMMANDS.iter().zip(&c.requests) {
            for (status, n) in Status::ALL.iter().zip(row) {
                let n = n.get();
                if n > 0 {
                    let code = status.code().to_string();
                    let labels = [("command", *command), ("status", code.as_str())];
                    ConstCounter::new(n).encode(requests.encode_family(&labels)?)?;
                }
            }
        }
        let mut latency = encoder.encode_descriptor(
            "hftp_request_duration_seconds",
            "From a request's last byte read to its answer ready (storage included).",
            None,
            MetricType::Histogram,
        )?;
        let (sum, count, buckets) = c.request_seconds.snapshot();
        latency.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
        let modes = ["base64", "raw"];
        let mut bytes = encoder.encode_descriptor(
            "hftp_slice_bytes_sent",
            "Bytes of slice bodies sent whole, after their heads, by mode.",
            None,
            MetricType::Counter,
        )?;
        for (mode, n) in modes.iter().zip(&c.slice_bytes) {
            ConstCounter::new(n.get()).encode(bytes.encode_family(&[("mode", *mode)])?)?;
        }
        let mut slices = encoder.encode_descriptor(
            "hftp_slice_duration_seconds",
            "From a get_slice request to the last byte of its body handed to the socket.",
            None,
            MetricType::Histogram,
        )?;
        for (mode, h) in modes.iter().zip(&c.slice_seconds) {
            histogram(&mut slices, &[("mode", *mode)], h)?;
        }
        let mut storage = encoder.encode_descriptor(
            "hftp_storage_operation_duration_seconds",
            "Storage operations, by backend and operation.",
            None,
            MetricType::Histogram,
        )?;
        for (op, h) in StorageOp::ALL.iter().zip(&c.storage_seconds) {
            histogram(
                &mut storage,
                &[("backend", m.backend), ("operation", op.name())],
                h,
            )?;
        }
        let mut errors = encoder.encode_descriptor(
            "hftp_storage_errors",
            "Storage operations that failed (answered 199, or a slice cut short).",
            None,
            MetricType::Counter,
        )?;
        for (op, n) in StorageOp::ALL.iter().zip(&c.storage_errors) {
            let labels = [("backend", m.backend), ("operation", op.name())];
            ConstCounter::new(n.get()).encode(errors.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
