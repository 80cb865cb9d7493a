//! A gauge whose sample is left out while its value is not known.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};

/// A [`Gauge`] with no sample until [`set`](Self::set) and after
/// [`forget`](Self::forget): for a figure read from the store when scraped,
/// absent while the store cannot be read (NATS away) rather than kept at its
/// last value, which an alert would take for the current one. Its `# HELP`
/// and `# TYPE` lines stay, as an empty family's do. Clones share the value.
#[derive(Clone, Debug, Default)]
pub struct OptionalGauge {
    known: Arc<AtomicBool>,
    gauge: Gauge,
}

impl OptionalGauge {
    pub fn set(&self, v: i64) {
        self.gauge.set(v);
        self.known.store(true, Ordering::Release);
    }

    /// No sample until the next [`set`](Self::set).
    pub fn forget(&self) {
        self.known.store(false, Ordering::Release);
    }

    /// [`set`](Self::set) a known value, [`forget`](Self::forget) an unknown one.
    pub fn set_known(&self, v: Option<u64>) {
        match v {
            Some(v) => self.set(i64::try_from(v).unwrap_or(i64::MAX)),
            None => self.forget(),
        }
    }

    pub fn get(&self) -> Option<i64> {
        self.known.load(Ordering::Acquire).then(|| self.gauge.get())
    }
}

impl TypedMetric for OptionalGauge {
    const TYPE: MetricType = MetricType::Gauge;
}

impl EncodeMetric for OptionalGauge {
    fn encode(&self, encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        if self.known.load(Ordering::Acquire) {
            self.gauge.encode(encoder)
        } else {
            Ok(())
        }
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    fn text(g: &OptionalGauge) -> String {
        let mut r = Registry::default();
        r.register("x", "X", g.clone());
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &r).unwrap();
        out
    }

    #[test]
    fn a_sample_only_while_known() {
        let g = OptionalGauge::default();
        assert_eq!((g.get(), text(&g).contains("\nx ")), (None, false));
        g.set(7);
        assert_eq!(g.get(), Some(7));
        assert!(text(&g).contains("\nx 7\n"), "{}", text(&g));
        g.forget();
        assert_eq!(g.get(), None);
        let t = text(&g);
        assert!(!t.contains("\nx ") && t.contains("# TYPE x gauge"), "{t}");
        g.set_known(Some(3));
        assert_eq!(g.get(), Some(3));
        g.set_known(None);
        assert_eq!(g.get(), None);
    }
}
