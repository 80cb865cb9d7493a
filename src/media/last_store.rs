//! Which media store this relay archived into when it last started, kept in
//! a small file under `store.path`, so a restart with another `media.store`
//! is noticed like a reload that moves it: the files archived before stay in
//! the old store, where they are neither served nor swept.

use std::path::{Path, PathBuf};

/// The file under `store.path` that names the media store of the last start.
pub const FILE: &str = "media-store";

fn file(store_path: &Path) -> PathBuf {
    store_path.join(FILE)
}

/// Compare `location` (a [`super::MediaStore::location`], no secrets) with
/// the one of the last start, warn when it moved, and remember it. A file
/// that cannot be read or written is logged and otherwise ignored: this is a
/// warning for the operator, not a condition of the start.
pub fn check(store_path: &Path, location: &str) {
    let location = &within(store_path, location);
    let path = file(store_path);
    match std::fs::read_to_string(&path) {
        // Written whole by an earlier version: read as this one writes it.
        Ok(last) if within(store_path, last.trim_end()) != *location => {
            tracing::warn!(from = %last.trim_end(), to = %location,
                "media.store changed since the last start: {}", super::settings::MOVED);
        }
        Ok(_) => return,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(file = %path.display(), error = %e, "cannot read which media store was used last"),
    }
    remember(store_path, location);
}

/// Remember `location` as the store in use (a reload that moved it: it
/// warned already), unless it is remembered already.
pub fn remember(store_path: &Path, location: &str) {
    let location = &within(store_path, location);
    let path = file(store_path);
    if std::fs::read_to_string(&path).is_ok_and(|last| last.trim_end() == *location) {
        return;
    }
    if let Err(e) = write(&path, location) {
        tracing::warn!(file = %path.display(), error = %e, "cannot record which media store is used");
    }
}

/// `location` as remembered: a local directory under `store.path` (the
/// default, `media` there) named from `store.path`, so a store moved or
/// restored elsewhere with its media is not taken for a media store that
/// moved (store review, stop 66: the warning told the operator to move
/// files that had moved with it).
fn within(store_path: &Path, location: &str) -> String {
    // As the media root is named (canonical: under the unit's DynamicUser
    // /var/lib/hookrelay is a link into /var/lib/private).
    let store = std::fs::canonicalize(store_path)
        .or_else(|_| std::path::absolute(store_path))
        .unwrap_or_else(|_| store_path.to_path_buf());
    let prefix = format!("local directory {}/", store.display());
    match location.strip_prefix(&prefix) {
        Some(rest) => format!("local directory {{store.path}}/{rest}"),
        None => location.to_string(),
    }
}

/// Replace the file whole (a crash leaves the old name or the new one).
/// `store.path` is made if it is not there (a cluster relay keeps nothing
/// else in it).
fn write(path: &Path, location: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    std::io::Write::write_all(&mut f, format!("{location}\n").as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_media_directory_under_the_store_moves_with_it() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let at = |d: &Path| format!("local directory {}", d.join("media").display());
        check(a.path(), &at(a.path()));
        std::fs::copy(file(a.path()), file(b.path())).unwrap();
        assert_eq!(within(b.path(), &at(b.path())), "local directory {store.path}/media");
        // Copied elsewhere, media and all: the same store.
        assert_eq!(
            std::fs::read_to_string(file(b.path())).unwrap().trim_end(),
            within(b.path(), &at(b.path()))
        );
        // As an earlier version wrote it (whole): the same, no warning.
        assert_eq!(within(a.path(), &at(a.path())), within(b.path(), &at(b.path())));
        // One outside the store is named whole.
        assert_eq!(
            within(b.path(), "local directory /srv/media"),
            "local directory /srv/media"
        );
    }

    #[test]
    fn the_location_is_remembered_and_rewritten_only_when_it_moves() {
        let dir = tempfile::tempdir().unwrap();
        check(dir.path(), "local directory /a");
        assert_eq!(
            std::fs::read_to_string(file(dir.path())).unwrap(),
            "local directory /a\n"
        );
        check(dir.path(), "s3://b/p at http://127.0.0.1:9000");
        assert_eq!(
            std::fs::read_to_string(file(dir.path())).unwrap(),
            "s3://b/p at http://127.0.0.1:9000\n"
        );
        assert!(!dir.path().join("media-store.tmp").exists());
    }

    #[test]
    fn a_store_path_that_cannot_be_written_does_not_stop_anything() {
        let dir = tempfile::tempdir().unwrap();
        let under_a_file = dir.path().join("a-file");
        std::fs::write(&under_a_file, "").unwrap();
        check(&under_a_file.join("store"), "local directory /a");
        let made = dir.path().join("made");
        check(&made, "local directory /a");
        assert!(file(&made).exists(), "store.path is made when it is not there");
    }
}
