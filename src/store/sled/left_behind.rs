//! An embedded store left at `store.path` by a relay that ran on one host
//! before it was switched to cluster mode: the cluster relay never reads it,
//! so deliveries still pending there (and its dead letters) are not sent.
//! Said at start and by `check-config`, with what to do; the store is not
//! opened (sled takes its lock and may read for long): its files tell.

use std::path::Path;

/// sled writes these two files into every store directory it opens.
const STORE_FILES: [&str; 2] = ["conf", "db"];

/// The warning for a cluster-mode relay whose `store.path` holds an
/// embedded store, if it does.
pub fn left_behind_warning(store_path: &Path) -> Option<String> {
    if !STORE_FILES.iter().all(|f| store_path.join(f).is_file()) {
        return None;
    }
    Some(format!(
        "{} holds an embedded store, which cluster mode (store.backend = \"nats\") never reads: callbacks it \
         still had to deliver, and its dead letters, are not sent from there. If it may have pending work, run \
         this relay once more with store.backend = \"sled\" until `hookrelay status` shows no backlog, then \
         switch; once it is drained (or to keep it as an archive only), move its files (conf, db, blobs, \
         snap.*) elsewhere: this warning is given as long as they are there",
        store_path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_directory_sled_has_opened_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        assert_eq!(left_behind_warning(&path), None, "no directory");
        std::fs::create_dir_all(path.join("acme")).unwrap();
        assert_eq!(
            left_behind_warning(&path),
            None,
            "only the ACME state a cluster relay keeps there"
        );
        drop(sled::open(&path).unwrap());
        let w = left_behind_warning(&path).expect("a sled store is there");
        assert!(
            w.starts_with(&path.display().to_string())
                && w.contains("hookrelay status")
                && w.contains("once it is drained"),
            "{w}"
        );
    }
}
