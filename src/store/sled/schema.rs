//! The schema checks when the store opens: a store a newer hookrelay wrote
//! (a newer version row in this version's tree, or a tree of its own named
//! `hookrelay-v{N}`, as this version moved to `hookrelay-v2`) is refused;
//! a new store, a 0.1 store or an interrupted migration is (re)built; a
//! migrated store whose 0.1 tree is still there is checked, and migrated
//! again when 0.1 ran on it before version 2 served ([`super::migrate`]);
//! a sled database with no tree of hookrelay's but data of another
//! program's is refused, not written into.

use super::keys;
use super::{migrate, SCHEMA, TREE, TREE_SCHEMA};
use crate::store::{Options, StoreError};

/// Open this version's tree, checked; what a migration carried over.
pub(super) fn open_tree(db: &sled::Db, opts: &Options) -> Result<(sled::Tree, migrate::Opened), StoreError> {
    // Before `open_tree`, which would create this version's tree beside
    // the newer one's.
    if let Some(newer) = newest_tree_schema(db).filter(|n| *n > TREE_SCHEMA) {
        return Err(StoreError::Incompatible(format!(
            "the store at {} was written by a newer hookrelay (its tree hookrelay-v{newer}); this version \
             reads schema {SCHEMA} and older: upgrade hookrelay",
            opts.path.display()
        )));
    }
    foreign_data(db, opts)?;
    let tree = db.open_tree(TREE)?;
    if let Some(v) = tree.get(keys::VERSION_KEY)? {
        let version = v.get(..4).and_then(|b| b.try_into().ok()).map_or(0, u32::from_be_bytes);
        if version > SCHEMA {
            return Err(newer_store(opts, version));
        }
        if !migrate::written_by_v1_since(db, &tree, opts)? {
            if version < SCHEMA {
                // Schema 2 reads as 3; from now on an older hookrelay,
                // which would misread a body in rows of its own, refuses it.
                tree.insert(keys::VERSION_KEY, &SCHEMA.to_be_bytes())?;
                db.flush()?;
            }
            return Ok((tree, migrate::Opened::Current));
        }
        // Migrate again: the version row goes first, so that a crash
        // from here on starts the migration over.
        migrate::room_to_migrate(db, opts)?;
        tree.remove(keys::VERSION_KEY)?;
        db.flush()?;
    }
    // New, or a 0.1 store, or a migration that was interrupted.
    migrate::room_to_migrate(db, opts)?;
    if !tree.is_empty() {
        // What an interrupted migration wrote.
        migrate::keep_systemd_waiting(
            "migrating the hookrelay 0.1 store: clearing the rows of an earlier attempt",
            true,
        );
    }
    tree.clear()?;
    let migrated = migrate::from_v1(db, &tree)?;
    // The version row, and what was migrated, in one batch: a crash after
    // it and before 0.1's tree is dropped is told from 0.1 writing again.
    let mut b = sled::Batch::default();
    b.insert(keys::VERSION_KEY, &SCHEMA.to_be_bytes());
    if migrated.is_some() {
        b.insert(keys::MIGRATED_KEY, migrate::fingerprint(db)?);
    }
    tree.apply_batch(b)?;
    db.flush()?;
    migrate::drop_v1(db, &tree)?;
    Ok((tree, migrated.map_or(migrate::Opened::Created, migrate::Opened::FromV1)))
}

/// A database with no tree of hookrelay's (0.1's `hookrelay`, version 2's
/// `hookrelay-v{N}`) but trees or rows of another program's: `store.path`
/// names that program's files, which hookrelay would write into.
fn foreign_data(db: &sled::Db, opts: &Options) -> Result<(), StoreError> {
    let ours = |n: &[u8]| {
        n == migrate::V1_TREE.as_bytes()
            || n.strip_prefix(b"hookrelay-v".as_slice())
                .is_some_and(|v| !v.is_empty() && v.iter().all(u8::is_ascii_digit))
    };
    if db.tree_names().iter().any(|n| ours(n)) {
        return Ok(());
    }
    let default = db.name();
    let theirs: Vec<String> = db
        .tree_names()
        .iter()
        .filter(|n| **n != default)
        .take(5)
        .map(|n| format!("{:?}", String::from_utf8_lossy(n)))
        .collect();
    let what = match (db.is_empty(), theirs.is_empty()) {
        (true, true) => return Ok(()),
        (false, true) => "rows in sled's default tree".to_string(),
        (true, false) => format!("the trees {}", theirs.join(", ")),
        (false, false) => format!("rows in sled's default tree and the trees {}", theirs.join(", ")),
    };
    Err(StoreError::Incompatible(format!(
        "the store at {} is a sled database another program wrote (it holds {what}, and no hookrelay \
         store): hookrelay would write into it; set store.path to a directory of hookrelay's own",
        opts.path.display()
    )))
}

pub(super) fn has_tree(db: &sled::Db, name: &str) -> bool {
    db.tree_names().iter().any(|n| n.as_ref() == name.as_bytes())
}

/// The highest N of the trees named `hookrelay-v{N}` that hold rows.
fn newest_tree_schema(db: &sled::Db) -> Option<u32> {
    db.tree_names()
        .iter()
        .filter_map(|n| {
            std::str::from_utf8(n)
                .ok()?
                .strip_prefix("hookrelay-v")?
                .parse::<u32>()
                .ok()
        })
        .filter(|n| *n <= TREE_SCHEMA || db.open_tree(format!("hookrelay-v{n}")).is_ok_and(|t| !t.is_empty()))
        .max()
}

fn newer_store(opts: &Options, version: u32) -> StoreError {
    StoreError::Incompatible(format!(
        "the store at {} was written by a newer hookrelay (schema {version}); this version reads \
         schema {SCHEMA} and older: upgrade hookrelay",
        opts.path.display()
    ))
}
