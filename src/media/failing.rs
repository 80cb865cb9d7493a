//! Whether a media store failed a write since its last passing probe: set by
//! a failed write (and at opening), cleared by a probe that passes — but only
//! of the failures it saw begin before it: a write failing while the probe
//! ran keeps the store failing (the probe's own file may have been written
//! just before the disk went).

use std::sync::atomic::{AtomicU64, Ordering};

/// Shared by a store's clones.
#[derive(Debug)]
pub(crate) struct Failing {
    /// Failures noted, counting the opening as one.
    noted: AtomicU64,
    /// `noted` as the last passing probe found it when it began.
    cleared: AtomicU64,
}

impl Failing {
    /// Failing until a first probe passes.
    pub(crate) fn at_opening() -> Failing {
        Failing {
            noted: AtomicU64::new(1),
            cleared: AtomicU64::new(0),
        }
    }

    /// A write failed.
    pub(crate) fn note(&self) {
        self.noted.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn is_failing(&self) -> bool {
        self.noted.load(Ordering::Acquire) != self.cleared.load(Ordering::Acquire)
    }

    /// Run `probe`; when it passes, clear the failures noted before it began.
    pub(crate) fn probe<E>(&self, probe: impl FnOnce() -> Result<(), E>) -> Result<(), E> {
        let before = self.noted.load(Ordering::Acquire);
        probe()?;
        self.cleared.fetch_max(before, Ordering::AcqRel);
        Ok(())
    }

    /// [`Failing::probe`] of an asynchronous probe.
    pub(crate) async fn probe_async<E>(
        &self,
        probe: impl std::future::Future<Output = Result<(), E>>,
    ) -> Result<(), E> {
        let before = self.noted.load(Ordering::Acquire);
        probe.await?;
        self.cleared.fetch_max(before, Ordering::AcqRel);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Failing;

    #[test]
    fn a_probe_clears_the_failures_before_it_not_one_during_it() {
        let f = Failing::at_opening();
        assert!(f.is_failing(), "failing until a first probe passes");
        assert_eq!(f.probe(|| Err::<(), _>("disk gone")), Err("disk gone"));
        assert!(f.is_failing(), "a failed probe clears nothing");
        f.probe(|| Ok::<_, ()>(())).unwrap();
        assert!(!f.is_failing());

        f.note();
        f.probe(|| {
            f.note(); // a write failing while the probe runs
            Ok::<_, ()>(())
        })
        .unwrap();
        assert!(f.is_failing(), "the failure during the probe is kept");
        f.probe(|| Ok::<_, ()>(())).unwrap();
        assert!(!f.is_failing());
    }
}
