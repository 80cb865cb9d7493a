//! The schema checks when the store opens: a store a newer hookrelay wrote
//! (a newer version row in this version's tree, or a tree of its own named
//! `hookrelay-v{N}`, as this version moved to `hookrelay-v2`) is refused;
//! a new store, a 0.1 store or an interrupted migration is (re)built; a
//! migrated store whose 0.1 tree is still there is checked, and migrated
//! again when 0.1 ran on it before version 2 served ([`super::migrate`]);
//! a sled database with no tree of hookrelay's but data of another
//! program's is refused before hookrelay writes anything of its own there.

use super::keys;
use super::{migrate, SCHEMA, TREE, TREE_SCHEMA};
use crate::store::{Options, StoreError};

/// Open this version's tree, checked; what a migration carried over.
/// `opened_before`: the store was opened by hookrelay before
/// (`open_db::opened_before`), so it had hookrelay's version row.
pub(super) fn open_tree(
    db: &sled::Db,
    opts: &Options,
    opened_before: bool,
) -> Result<(sled::Tree, migrate::Opened), StoreError> {
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
    if opened_before && tree.is_empty() && !has_tree(db, migrate::V1_TREE) {
        // A store hookrelay opened, yet nothing of hookrelay's in it: a `db`
        // cut short (a backup's copy interrupted) whose recovery kept
        // nothing. Taken as new, it was served empty and ready, every
        // pending delivery and dedupe key gone without a word (store
        // review, stop 66).
        return Err(StoreError::Damaged(format!(
            "{} holds nothing of the hookrelay store it was: the file may be cut short (a copy or restore \
             interrupted); restore the store from a backup",
            opts.path.join("db").display()
        )));
    }
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
/// names that program's files. Refused before hookrelay writes a tree or
/// row of its own into it (sled's opening has rewritten its own log and
/// snapshot files by then; the other program's data reads as before).
fn foreign_data(db: &sled::Db, opts: &Options) -> Result<(), StoreError> {
    let names = db.tree_names();
    if names
        .iter()
        .any(|n| n.as_ref() == migrate::V1_TREE.as_bytes() || tree_schema(n).is_some())
    {
        return Ok(());
    }
    let default = db.name();
    let mut theirs: Vec<&sled::IVec> = names.iter().filter(|n| **n != default).collect();
    theirs.sort();
    let mut listed: Vec<String> = theirs
        .iter()
        .take(5)
        .map(|n| format!("{:?}", String::from_utf8_lossy(n)))
        .collect();
    if theirs.len() > listed.len() {
        listed.push(format!("{} more", theirs.len() - listed.len()));
    }
    let listed = listed.join(", ");
    let what = match (db.is_empty(), theirs.is_empty()) {
        (true, true) => return Ok(()),
        (false, true) => "rows in sled's default tree".to_string(),
        (true, false) => format!("the trees {listed}"),
        (false, false) => format!("rows in sled's default tree and the trees {listed}"),
    };
    Err(StoreError::Incompatible(format!(
        "the store at {} is a sled database another program wrote (it holds {what}, and no hookrelay \
         store): hookrelay does not write into it; set store.path to a directory of hookrelay's own",
        opts.path.display()
    )))
}

/// N of a tree named `hookrelay-v{N}` (digits only).
fn tree_schema(name: &[u8]) -> Option<u32> {
    let n = name.strip_prefix(b"hookrelay-v".as_slice())?;
    if n.is_empty() || !n.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(n).ok()?.parse().ok()
}

pub(super) fn has_tree(db: &sled::Db, name: &str) -> bool {
    db.tree_names().iter().any(|n| n.as_ref() == name.as_bytes())
}

/// The highest N of the trees named `hookrelay-v{N}` that hold rows.
fn newest_tree_schema(db: &sled::Db) -> Option<u32> {
    db.tree_names()
        .iter()
        .filter_map(|n| tree_schema(n))
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
