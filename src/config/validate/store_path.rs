//! `store.path` with the embedded store: a directory, or one the start can
//! make (not a file, nor under one), checked by `check-config` as by `run`.

use std::path::PathBuf;

use super::Validator;
use crate::config::raw::RawStore;
use crate::config::values::StoreBackend;
use crate::config::ConfigError;

impl Validator<'_> {
    pub(super) fn store_path(&self, s: &RawStore, backend: &StoreBackend) -> Result<PathBuf, ConfigError> {
        let path = self.resolve_path(&s.path);
        if !matches!(backend, StoreBackend::Sled) {
            return Ok(path);
        }
        // Empty, it would be the config file's own directory: the store's
        // files, its lock and `media/` among the configuration.
        if s.path.as_os_str().to_string_lossy().trim().is_empty() {
            return Err(self.err(
                "store.path",
                None,
                "store.path is empty: name the store's own directory (as \"/var/lib/hookrelay\")",
            ));
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
