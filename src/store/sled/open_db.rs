//! Opening sled's database: the store directory created private, a switch
//! of `store.compression` on an existing store refused with a message that
//! says what to do, and a lock held by a previous opening of this process
//! waited for briefly before it is reported as a second process.
//!
//! Does not know the store's rows (see the parent module).

use std::path::Path;

use super::super::{Options, StoreError};

/// Refuse to switch compression on an existing store, with a message that says
/// what to do (sled's own error names its internals).
fn check_compression(path: &Path, wanted: bool) -> Result<(), StoreError> {
    // sled's `conf` file: text lines, then a checksum.
    let Ok(bytes) = std::fs::read(path.join("conf")) else {
        return Ok(());
    };
    let conf = String::from_utf8_lossy(&bytes);
    let had = conf
        .lines()
        .find_map(|l| l.strip_prefix("use_compression: "))
        .map(|v| v.trim() == "true");
    match had {
        Some(had) if had != wanted => Err(StoreError::Incompatible(format!(
            "the store at {} was created with store.compression = {had} (sled's own setting, whichever \
             program made it); sled cannot switch an existing store (set it back to {had}, or start a new \
             store at another store.path)",
            path.display()
        ))),
        _ => Ok(()),
    }
}

/// Open sled. Its lock file is released a moment after the last handle of a
/// previous opening is dropped (its thread pool lets go last), so a busy lock
/// is retried briefly before it is reported as a second process.
pub(super) fn open_db(opts: &Options) -> Result<sled::Db, StoreError> {
    check_compression(&opts.path, opts.compression)?;
    if !opts.path.exists() {
        crate::private_dir::create(&opts.path).map_err(|e| {
            StoreError::Engine(format!(
                "cannot create the store directory {}: {e}",
                opts.path.display()
            ))
        })?;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let r = sled::Config::new()
            .path(&opts.path)
            .cache_capacity(opts.cache_bytes)
            .use_compression(opts.compression)
            .flush_every_ms(Some(1000))
            .open();
        match r {
            Ok(db) => return Ok(db),
            Err(sled::Error::Io(io)) if io.to_string().contains("could not acquire lock") => {
                if std::time::Instant::now() > deadline {
                    return Err(StoreError::Incompatible(format!(
                        "another hookrelay is using this store ({}): only one process may open a store (or another \
                         program holds this sled database's lock)",
                        std::path::absolute(&opts.path)
                            .unwrap_or_else(|_| opts.path.clone())
                            .display()
                    )));
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => return Err(e.into()),
        }
    }
}
