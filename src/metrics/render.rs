//! The Prometheus text of every slot, as the supervisor serves it when scraped. The values
//! are read from the shared [`Area`]; prometheus-client only writes them out, in the
//! OpenMetrics text format or the older 0.0.4 one, whichever the scraper asks for.

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::exemplar::Exemplar;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::area::{Area, Cell, DURATION_BUCKETS};

/// Which text format to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `application/openmetrics-text; version=1.0.0`, what Prometheus asks for first.
    OpenMetrics,
    /// `text/plain; version=0.0.4`, for everything else (curl, older scrapers).
    Text,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Text => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        }
    }
}

/// Workers replaced, by why (counted by the supervisor, which is the one that knows).
pub type Restarts = Vec<(String, u64)>;

/// One scrape: the area and what the supervisor knows of its workers.
#[derive(Debug)]
pub struct Scrape {
    pub area: Arc<Area>,
    /// (slot, pid) of each worker alive now.
    pub workers: Vec<(usize, u32)>,
    pub restarts: Restarts,
}

impl fmt::Debug for Area {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Area({} slots)", self.slots())
    }
}

type NoExemplar = Option<&'static Exemplar<NoLabelSet, u64>>;

fn counter(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: u64) -> fmt::Result {
    e.encode_descriptor(name, help, None, MetricType::Counter)?
        .encode_counter::<NoLabelSet, u64, u64>(&v, NoExemplar::None)
}

fn nanos_to_seconds(n: u64) -> f64 {
    n as f64 / 1e9
}

impl Scrape {
    fn sum(&self, cell: Cell) -> u64 {
        (0..self.area.slots())
            .map(|s| self.area.get(s, cell))
            .fold(0, u64::wrapping_add)
    }

    /// A gauge with one series per live worker, labelled by its slot.
    fn per_worker(
        &self,
        e: &mut DescriptorEncoder<'_>,
        name: &str,
        help: &str,
        value: impl Fn(usize) -> f64,
    ) -> fmt::Result {
        let mut m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for &(slot, _) in &self.workers {
            let labels = [("worker", slot.to_string())];
            m.encode_family(&labels)?.encode_gauge(&value(slot))?;
        }
        Ok(())
    }

    fn statuses(&self) -> Vec<(u16, u64)> {
        let mut by_status = std::collections::BTreeMap::new();
        for slot in 0..self.area.slots() {
            for (status, n) in self.area.statuses(slot) {
                *by_status.entry(status).or_insert(0u64) += n;
            }
        }
        by_status.into_iter().collect()
    }

    fn encode_all(&self, mut e: DescriptorEncoder<'_>) -> fmt::Result {
        let statuses = self.statuses();
        {
            let mut m = e.encode_descriptor(
                "juggler_requests",
                "Requests answered by all workers, by response status",
                None,
                MetricType::Counter,
            )?;
            for (status, n) in &statuses {
                let labels = [("code", status.to_string())];
                m.encode_family(&labels)?
                    .encode_counter::<NoLabelSet, u64, u64>(n, NoExemplar::None)?;
            }
        }
        {
            let mut m = e.encode_descriptor(
                "juggler_worker_requests",
                "Requests answered by each worker alive now (its slot's count goes on when a worker is replaced)",
                None,
                MetricType::Counter,
            )?;
            for &(slot, _) in &self.workers {
                let n: u64 = self.area.statuses(slot).map(|(_, n)| n).sum();
                let labels = [("worker", slot.to_string())];
                m.encode_family(&labels)?
                    .encode_counter::<NoLabelSet, u64, u64>(&n, NoExemplar::None)?;
            }
        }
        {
            let mut buckets = [0u64; DURATION_BUCKETS.len() + 1];
            for slot in 0..self.area.slots() {
                for (b, n) in buckets.iter_mut().zip(self.area.buckets(slot)) {
                    *b += n;
                }
            }
            // The count from the same reading as the buckets: requests that end while a scrape
            // reads would otherwise make it disagree with the +Inf bucket, which OpenMetrics
            // parsers refuse.
            let count = buckets.iter().sum();
            // Per bucket, not cumulative: the encoder adds them up as it writes.
            let bounds = DURATION_BUCKETS.iter().copied().chain([f64::INFINITY]);
            let buckets: Vec<(f64, u64)> = bounds.zip(buckets).collect();
            e.encode_descriptor(
                "juggler_request_duration_seconds",
                "Time from a request's head to the end of its response, all workers",
                None,
                MetricType::Histogram,
            )?
            .encode_histogram::<NoLabelSet>(
                nanos_to_seconds(self.sum(Cell::DurationNanos)),
                count,
                &buckets,
                None,
            )?;
        }
        self.per_worker(
            &mut e,
            "juggler_requests_in_flight",
            "Requests whose response is not over yet, per worker",
            |s| self.area.get(s, Cell::InFlight) as f64,
        )?;
        self.per_worker(
            &mut e,
            "juggler_connections_active",
            "Client connections open, per worker",
            |s| self.area.get(s, Cell::Connections) as f64,
        )?;
        counter(
            &mut e,
            "juggler_connections",
            "Client connections accepted by all workers",
            self.sum(Cell::ConnectionsTotal),
        )?;
        counter(
            &mut e,
            "juggler_received_bytes",
            "Bytes read from client connections (as on the wire: TLS records included)",
            self.sum(Cell::BytesIn),
        )?;
        counter(
            &mut e,
            "juggler_sent_bytes",
            "Bytes written to client connections (as on the wire: TLS records included)",
            self.sum(Cell::BytesOut),
        )?;
        self.per_worker(
            &mut e,
            "juggler_event_loop_lag_seconds",
            "How long the worker's event loop last took to turn to a new event",
            |s| nanos_to_seconds(self.area.get(s, Cell::LoopLagNanos)),
        )?;
        let threaded = self
            .workers
            .iter()
            .any(|&(slot, _)| self.area.get(slot, Cell::Threaded) == 1);
        if threaded {
            self.per_worker(
                &mut e,
                "juggler_wsgi_threads",
                "WSGI threads alive, per worker",
                |s| self.area.get(s, Cell::Threads) as f64,
            )?;
            self.per_worker(
                &mut e,
                "juggler_wsgi_threads_busy",
                "WSGI threads running an app call, per worker",
                |s| self.area.get(s, Cell::ThreadsBusy) as f64,
            )?;
            self.per_worker(
                &mut e,
                "juggler_wsgi_requests_queued",
                "Requests waiting for a WSGI thread, per worker",
                |s| self.area.get(s, Cell::Queued) as f64,
            )?;
        }
        {
            let mut m = e.encode_descriptor(
                "juggler_worker",
                "Workers alive now",
                None,
                MetricType::Info,
            )?;
            for &(slot, pid) in &self.workers {
                let labels = [("worker", slot.to_string()), ("pid", pid.to_string())];
                m.encode_info(&labels)?;
            }
        }
        {
            let mut m = e.encode_descriptor(
                "juggler_worker_restarts",
                "Workers started in place of one that died, hung, was recycled or reloaded, or grew too big",
                None,
                MetricType::Counter,
            )?;
            for (reason, n) in &self.restarts {
                let labels = [("reason", reason.as_str())];
                m.encode_family(&labels)?
                    .encode_counter::<NoLabelSet, u64, u64>(n, NoExemplar::None)?;
            }
        }
        Ok(())
    }
}

/// prometheus-client asks a collector to encode itself; this one encodes a scrape.
#[derive(Debug)]
struct Collect(Scrape);

impl Collector for Collect {
    fn encode(&self, encoder: DescriptorEncoder) -> fmt::Result {
        self.0.encode_all(encoder)
    }
}

/// The exposition of `scrape` in `format`.
pub fn render(scrape: Scrape, format: Format) -> Result<String, fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Collect(scrape)));
    let mut out = String::with_capacity(8 * 1024);
    match format {
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &registry)?,
        Format::Text => prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)?,
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::metrics::Slot;

    fn scrape(area: &Arc<Area>, workers: Vec<(usize, u32)>) -> Scrape {
        Scrape {
            area: area.clone(),
            workers,
            restarts: vec![("died".into(), 2)],
        }
    }

    fn lines(text: &str) -> Vec<&str> {
        text.lines().filter(|l| !l.starts_with('#')).collect()
    }

    #[test]
    fn counters_add_up_over_every_slot_and_gauges_are_per_live_worker() {
        let area = Arc::new(Area::new(3).expect("mmap"));
        let (a, b, gone) = (
            Slot::new(area.clone(), 0).expect("slot"),
            Slot::new(area.clone(), 1).expect("slot"),
            Slot::new(area.clone(), 2).expect("slot"),
        );
        for (slot, status) in [(&a, 200), (&b, 200), (&gone, 500)] {
            slot.request_began();
            slot.request_ended(status, Duration::from_millis(2));
        }
        a.request_began();
        a.connection_accepted();
        a.connection_opened();
        b.bytes_in(100);
        gone.bytes_in(5);
        let text = render(scrape(&area, vec![(0, 10), (1, 11)]), Format::Text).expect("render");
        let body = lines(&text);
        for want in [
            "juggler_requests_total{code=\"200\"} 2",
            "juggler_requests_total{code=\"500\"} 1",
            "juggler_worker_requests_total{worker=\"0\"} 1",
            "juggler_worker_requests_total{worker=\"1\"} 1",
            "juggler_request_duration_seconds_count 3",
            "juggler_request_duration_seconds_bucket{le=\"0.001\"} 0",
            "juggler_request_duration_seconds_bucket{le=\"0.0025\"} 3",
            "juggler_request_duration_seconds_bucket{le=\"+Inf\"} 3",
            "juggler_requests_in_flight{worker=\"0\"} 1.0",
            "juggler_requests_in_flight{worker=\"1\"} 0.0",
            "juggler_connections_active{worker=\"0\"} 1.0",
            "juggler_connections_total 1",
            "juggler_received_bytes_total 105",
            "juggler_worker_info{worker=\"1\",pid=\"11\"} 1",
            "juggler_worker_restarts_total{reason=\"died\"} 2",
        ] {
            assert!(body.contains(&want), "{want:?} missing from:\n{text}");
        }
        assert!(
            !text.contains("worker=\"2\""),
            "a dead worker has no series of its own"
        );
        assert!(
            !text.contains("juggler_wsgi"),
            "no thread gauges without a pool"
        );
        assert!(text.contains("juggler_request_duration_seconds_sum 0.006"));
    }

    #[test]
    fn thread_gauges_appear_once_a_live_worker_has_a_pool() {
        let area = Arc::new(Area::new(2).expect("mmap"));
        Slot::new(area.clone(), 1).expect("slot").threads(3, 2, 1);
        let text = render(scrape(&area, vec![(0, 10)]), Format::Text).expect("render");
        assert!(!text.contains("juggler_wsgi"), "slot 1 is not alive");
        let text = render(scrape(&area, vec![(0, 10), (1, 11)]), Format::Text).expect("render");
        let body = lines(&text);
        for want in [
            "juggler_wsgi_threads{worker=\"1\"} 3.0",
            "juggler_wsgi_threads_busy{worker=\"1\"} 2.0",
            "juggler_wsgi_requests_queued{worker=\"1\"} 1.0",
            "juggler_wsgi_threads{worker=\"0\"} 0.0",
        ] {
            assert!(body.contains(&want), "{want:?} missing from:\n{text}");
        }
    }

    #[test]
    fn openmetrics_ends_with_eof_and_names_types_without_the_suffix() {
        let area = Arc::new(Area::new(1).expect("mmap"));
        let text = render(scrape(&area, vec![(0, 10)]), Format::OpenMetrics).expect("render");
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(text.contains("# TYPE juggler_requests counter\n"), "{text}");
        assert!(text.contains("# TYPE juggler_worker info\n"), "{text}");
        let text = render(scrape(&area, vec![(0, 10)]), Format::Text).expect("render");
        assert!(!text.contains("# EOF"));
        assert!(
            text.contains("# TYPE juggler_requests_total counter\n"),
            "{text}"
        );
        assert_ne!(
            Format::OpenMetrics.content_type(),
            Format::Text.content_type()
        );
        assert!(Format::Text.content_type().contains("version=0.0.4"));
    }
}
