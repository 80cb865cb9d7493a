//! `store.path` with the embedded store: a directory, or one the start can
//! make (not a file, nor under one), checked by `check-config` as by `run`.

use std::path::PathBuf;

use super::Validator;
use crate::config::raw::RawStore;
use crate::config::values::StoreBackend;
use crate::config::ConfigError;

impl Validator<'_> {
    /// An empty `store.path` is the config file's own directory: the
    /// store's files, its lock and `media/` among the configuration. A
    /// warning, not a refusal: a relay that ran so keeps its store.
    pub(super) fn empty_store_path_warning(&self, s: &RawStore, backend: &StoreBackend) -> Option<String> {
        (matches!(backend, StoreBackend::Sled) && s.path.as_os_str().to_string_lossy().trim().is_empty()).then(|| {
            format!(
                "{}: key `store.path`: it is empty, so the store is the config file's own directory, among the \
                 configuration: write `store.path = \".\"` to keep that store where it is, or move it to a \
                 directory of its own (as /var/lib/hookrelay) while the relay is stopped",
                self.file.display()
            )
        })
    }

    /// An embedded store under `/tmp`, `/var/tmp`, `/dev/shm` or `/run`:
    /// emptied at reboot (and by the packaged unit's `PrivateTmp=yes` at
    /// every stop), with the callbacks not yet delivered in it. A warning
    /// (a developer's trial store may well live there), at `check-config`
    /// and at every start (stop 66's Left: nothing said it).
    pub(super) fn temporary_store_path_warning(
        &self,
        path: &std::path::Path,
        backend: &StoreBackend,
    ) -> Option<String> {
        let temporary = ["/tmp", "/var/tmp", "/dev/shm", "/run"]
            .iter()
            .find(|t| path.starts_with(t))?;
        matches!(backend, StoreBackend::Sled).then(|| {
            format!(
                "{}: key `store.path`: {} is under {temporary}, which is emptied at reboot (and, for the packaged \
                 systemd unit, /tmp and /var/tmp at every stop): callbacks not yet delivered go with it; keep \
                 a store that matters under /var/lib/hookrelay",
                self.file.display(),
                path.display()
            )
        })
    }

    /// A `store.path` of other files and no store (`"/"`, an operator's
    /// directory): the store is written among them. A warning (a refusal
    /// would stop a relay at the next start whose directory holds quota
    /// files, a NAS's own, a backup beside the store), at `check-config`
    /// and at every start until the store is there. Not counted: sled's and
    /// the relay's own files (a store cut short, `media/`), hidden files, a
    /// disk's `lost+found`, and the config file itself (`store.path = "."`,
    /// warned about on its own).
    pub(super) fn foreign_files_warning(&self, path: &std::path::Path, backend: &StoreBackend) -> Option<String> {
        if !matches!(backend, StoreBackend::Sled) {
            return None;
        }
        // The relay's own beside the store: the default media directory, the
        // last start's media store, and this config file.
        let config = self.resolve_path(self.file);
        let mut others: Vec<String> = crate::store::sled::foreign_entries(path)
            .into_iter()
            .filter(|n| n != "media" && !n.starts_with(crate::media::last_store::FILE) && path.join(n) != config)
            .collect();
        if others.is_empty() {
            return None;
        }
        let more = if others.len() > 3 { ", …" } else { "" };
        others.truncate(3);
        Some(format!(
            "{}: key `store.path`: {} holds no store and other files ({}{more}): the store is written among them; \
             name an empty or new directory (or, if a store was there, put its files back)",
            self.file.display(),
            path.display(),
            others.join(", ")
        ))
    }

    /// Absolute ([`Self::resolve_path`]): every message, `status` and the
    /// media archive's default directory name the same directory.
    pub(super) fn store_path(&self, s: &RawStore, backend: &StoreBackend) -> Result<PathBuf, ConfigError> {
        let path = self.resolve_path(&s.path);
        if !matches!(backend, StoreBackend::Sled) {
            return Ok(path);
        }

        // The nearest part of it that exists must be a directory.
        let nearest = path.ancestors().find_map(|p| std::fs::metadata(p).ok().map(|m| (p, m)));
        match nearest {
            Some((p, m)) if !m.is_dir() => Err(self.err(
                "store.path",
                None,
                if p == path {
                    format!("{} is not a directory", path.display())
                } else {
                    format!("{} is under {}, which is not a directory", path.display(), p.display())
                },
            )),
            _ => Ok(path),
        }
    }
}
