//! Opening sled's database: the store directory created private, a switch
//! of `store.compression` on an existing store refused with a message that
//! says what to do, and a lock held by a previous opening of this process
//! waited for briefly before it is reported as a second process.
//!
//! Does not know the store's rows (see the parent module).

use std::path::Path;

use super::super::{Options, StoreError};

/// Refuse to switch compression on an existing store, with a message that says
/// what to do (sled's own error names its internals). `check-config` asks
/// it too: the store's `conf` is read, the store not opened.
pub fn check_compression(path: &Path, wanted: bool) -> Result<(), StoreError> {
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

/// A snapshot sled did not finish writing (`snap.*.generating`, left by a
/// crash) can make it fail at open as if the store were damaged: named, as
/// a hint, since moving that one file aside may be all it takes.
fn unfinished(path: &Path) -> String {
    let Ok(dir) = std::fs::read_dir(path) else {
        return String::new();
    };
    let left: Vec<String> = dir
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("snap.") && n.ends_with(".generating"))
        .collect();
    match left.first() {
        Some(name) => format!(
            "; {} is a snapshot sled did not finish: moving it aside first may be all it takes",
            path.join(name).display()
        ),
        None => String::new(),
    }
}

/// Refuse a store whose data file is missing while sled's `conf` is there:
/// sled would start it empty without a word, every pending delivery and
/// dedupe key gone (crash review, stop 61). A directory without `conf` is
/// new (or emptied on purpose) and starts empty.
fn check_data_file(path: &Path) -> Result<(), StoreError> {
    if path.join("conf").exists() && !path.join("db").exists() {
        return Err(StoreError::Damaged(format!(
            "{} is missing while {} is there: its data is gone (if this directory never held a store, a \
             first start cut short between the two files, remove {} and start again)",
            path.join("db").display(),
            path.join("conf").display(),
            path.join("conf").display()
        )));
    }
    Ok(())
}

/// The file a store that hookrelay opened holds beside sled's: such a store
/// has hookrelay's version row, flushed before the file is written.
const OPENED: &str = "hookrelay-store";

/// Whether `path` holds a store hookrelay opened before (sled's `conf` and
/// `db`, and [`OPENED`]): one in which sled's recovery finds nothing of
/// hookrelay's is damaged ([`super::schema::open_tree`] refuses it). Sled's
/// files without it are a first start cut short (a crash, a full disk
/// before the version row was written), taken as new as before.
pub(super) fn opened_before(path: &Path) -> bool {
    path.join("conf").is_file() && path.join("db").is_file() && path.join(OPENED).is_file()
}

/// The entries of `path` that are neither sled's files nor this store's
/// mark, nor hidden, nor a disk's `lost+found`, sorted; none when a store is
/// there (sled's `conf`): what a new store would be written among.
pub fn foreign_entries(path: &Path) -> Vec<String> {
    if path.join("conf").exists() {
        return Vec::new();
    }
    let Ok(dir) = std::fs::read_dir(path) else {
        return Vec::new();
    };
    let mut names: Vec<String> = dir
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            !n.starts_with('.')
                && !n.starts_with("snap.")
                && !matches!(n.as_str(), "lost+found" | "db" | "blobs" | OPENED)
        })
        .collect();
    names.sort_unstable();
    names
}

/// Mark the store as opened (once its version row is flushed). A failure is
/// logged and otherwise ignored: the mark only lets a later start tell a
/// `db` cut short from a new store.
pub(super) fn mark_opened(path: &Path) {
    let file = path.join(OPENED);
    if file.is_file() {
        return;
    }
    let text = "A hookrelay store: sled's files (conf, db, snap.*, blobs/) beside it. Back up the whole directory \
                while hookrelay is stopped.\n";
    if let Err(e) = std::fs::write(&file, text) {
        tracing::debug!(file = %file.display(), error = %e, "cannot mark the store as opened");
    }
}

/// A store directory, `db` file or `blobs/` directory the relay's user
/// cannot write (a restore or copy made as root): sled failed with a bare
/// "Permission denied" naming nothing, and the start exited 1, restarted
/// every 2 s by the unit (store review, stop 66). Refused naming it, as a
/// store no restart mends (exit 2). Only what sled writes is asked about
/// (its snapshots are new files in the directory; `conf` and the snapshots
/// it only reads, and hookrelay's own small files are not its): opening
/// `db` to append changes nothing in it.
fn check_writable(path: &Path) -> Result<(), StoreError> {
    use std::io::ErrorKind::PermissionDenied;
    let refuse = |what: &Path, e: std::io::Error| {
        StoreError::Unwritable(format!(
            "cannot write {} ({e}): the store's directory, its db file and blobs directory must be writable by \
             the user hookrelay runs as (after a restore or copy made as another user, root say, give them back: \
             `chown -R` the store directory to that user)",
            what.display()
        ))
    };
    let probe_in = |dir: &Path| -> Result<(), StoreError> {
        let probe = dir.join(".hookrelay-write-check");
        match std::fs::File::create(&probe) {
            Ok(_) => {
                let _ = std::fs::remove_file(&probe);
                Ok(())
            }
            Err(e) if e.kind() == PermissionDenied => Err(refuse(dir, e)),
            Err(_) => Ok(()),
        }
    };
    probe_in(path)?;
    let db = path.join("db");
    if db.is_file() {
        if let Err(e) = std::fs::OpenOptions::new().append(true).open(&db) {
            if e.kind() == PermissionDenied {
                return Err(refuse(&db, e));
            }
        }
    }
    let blobs = path.join("blobs");
    if blobs.is_dir() {
        probe_in(&blobs)?;
    }
    Ok(())
}

/// A store directory made by someone else (the operator, `mkdir`) keeps its
/// mode: one other users can enter lets them read every callback body
/// (signed media URLs are credentials), as sled writes its files 0644
/// under the usual umask. Said at start (it was not, stop 61's Left).
fn warn_if_open_to_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(mode) = std::fs::metadata(path).map(|m| m.permissions().mode() & 0o777) else {
        return;
    };
    if mode & 0o077 != 0 {
        tracing::warn!(
            "the store directory {} is open to other users of this machine (mode {mode:o}): its files hold \
             every callback body; make it the owner's only (chmod 700 {})",
            path.display(),
            path.display()
        );
    }
}

/// Open sled. Its lock file is released a moment after the last handle of a
/// previous opening is dropped (its thread pool lets go last), so a busy lock
/// is retried briefly before it is reported as a second process.
pub(super) fn open_db(opts: &Options) -> Result<sled::Db, StoreError> {
    check_compression(&opts.path, opts.compression)?;
    check_data_file(&opts.path)?;
    if opts.path.exists() {
        check_writable(&opts.path)?;
        warn_if_open_to_others(&opts.path);
    } else {
        crate::private_dir::create(&opts.path).map_err(|e| {
            // A symbolic link to nothing ("File exists"): say where it
            // points (a disk not mounted yet: exit 1, the unit tries again).
            let link = std::fs::read_link(&opts.path)
                .map(|t| {
                    format!(
                        " (a symbolic link to {}, which is not there: a disk not mounted?)",
                        t.display()
                    )
                })
                .unwrap_or_default();
            StoreError::Engine(format!(
                "cannot create the store directory {}: {e}{link}{}",
                opts.path.display(),
                crate::private_dir::unwritable_hint(&e)
            ))
        })?;
        // Said, not only done: a disk not mounted at boot, or a store
        // directory moved, gave an empty store without a word, callbacks
        // taken into it hidden once the disk was back (store review, stop 66).
        tracing::warn!(
            "no store at {}: created a new, empty one (if a store was expected there, a disk not mounted or a \
             directory moved, stop hookrelay and put it back: callbacks taken now are stored in the new one)",
            std::path::absolute(&opts.path)
                .unwrap_or_else(|_| opts.path.clone())
                .display()
        );
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let config = sled::Config::new()
            .path(&opts.path)
            .cache_capacity(opts.cache_bytes)
            .use_compression(opts.compression)
            .flush_every_ms(Some(1000));
        // sled panics on some damage (a `db` file cut short: an index out of
        // bounds in its recovery): a refusal naming the store, not a panic's
        // backtrace and exit 101 that a restart loop repeats.
        let r = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| config.open())) {
            Ok(r) => r,
            Err(panic) => {
                let why = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("no message");
                return Err(StoreError::Damaged(format!(
                    "sled failed reading them: {why}{}",
                    unfinished(&opts.path)
                )));
            }
        };
        match r {
            Ok(db) => return Ok(db),
            Err(sled::Error::Io(io)) if io.to_string().contains("could not acquire lock") => {
                if std::time::Instant::now() > deadline {
                    return Err(StoreError::InUse(format!(
                        "another hookrelay is using this store ({}): only one process may open a store (or another \
                         program holds this sled database's lock)",
                        std::path::absolute(&opts.path)
                            .unwrap_or_else(|_| opts.path.clone())
                            .display()
                    )));
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => {
                // An existing directory the relay cannot write (an operator's
                // `mkdir`, the unit's read-only system) says where it can (the
                // change review: only a new one's creation did).
                let hint = match &e {
                    sled::Error::Io(io) => crate::private_dir::unwritable_hint(io),
                    _ => "",
                };
                // sled writes a file at each open: a disk out of inodes said
                // only "No space left on device", `df -h` showing room.
                let inodes = crate::disk_room::shortage(&opts.path)
                    .map(|why| format!(" ({why})"))
                    .unwrap_or_default();
                return Err(match StoreError::from(e) {
                    StoreError::Damaged(why) => StoreError::Damaged(format!("{why}{}", unfinished(&opts.path))),
                    StoreError::Engine(why) => StoreError::Engine(format!("{why}{hint}{inodes}")),
                    e => e,
                });
            }
        }
    }
}
