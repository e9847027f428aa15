//! One redb table in a file of its own, beside the log: the history's
//! records (`history.redb`, written by snapshots) and the log's
//! per-conversation index (`log-index.redb`, written by the projector).
//!
//! Until 2026-12-06 both were sled trees. sled keeps an entry of ~110
//! bytes of RAM for every page it has, whatever its cache: these two trees
//! were nearly all of its pages, so the RSS grew with every message ever
//! stored (BENCHMARKS.md, "Memory (#12)"). redb's B-tree keeps its page
//! index on disk; in RAM it holds its cache (bounded by `--cache-mib`) and
//! its allocator's bitmaps (bits per page).
//!
//! One thread writes each file; readers take a read transaction per read
//! and never wait for it. Durable commits record redb's allocator state,
//! so an open after `kill -9` does not walk the whole file (redb's quick
//! repair). Writes reach the device a megabyte at a time ([`paced_file`]).

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

mod paced_file;

use paced_file::PacedFile;

/// Entries a migration copies per transaction.
const COPY_PER_COMMIT: usize = 65_536;

/// A table being written by [`TableFile::write`].
pub type Table<'t> = redb::Table<'t, &'static [u8], &'static [u8]>;

type Definition = TableDefinition<'static, &'static [u8], &'static [u8]>;

/// A table in a file, shared by its writer and its readers.
#[derive(Clone)]
pub struct TableFile {
    db: Arc<redb::Database>,
    table: Definition,
    /// A second table in the same file, committed with the first
    /// ([`TableFile::with_side_table`]).
    side: Option<Definition>,
    path: PathBuf,
}

impl std::fmt::Debug for TableFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableFile")
            .field("path", &self.path)
            .finish()
    }
}

/// What went wrong with a table's file: it names the file.
#[derive(Debug, thiserror::Error)]
#[error("{path} is unreadable or damaged ({source}); run `vato-admin rebuild` to make it again from the log")]
pub struct TableFileError {
    pub path: PathBuf,
    #[source]
    pub source: redb::Error,
}

impl TableFile {
    /// Opens (or creates, private to its user) the file `path` holding
    /// table `table`, with a read cache of `cache_bytes`.
    pub fn open(
        path: &Path,
        table: &'static str,
        cache_bytes: u64,
    ) -> Result<TableFile, TableFileError> {
        let failed = |e: redb::Error| TableFileError {
            path: path.to_path_buf(),
            source: e,
        };
        let definition = TableDefinition::new(table);
        for leftover in [NEW, REMOVED] {
            remove_leftover(&beside(path, leftover)).map_err(|e| failed(e.into()))?;
        }
        let file = match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
        {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                create(path, definition).map_err(failed)?;
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(path)
            }
            opened => opened,
        }
        .map_err(|e| failed(e.into()))?;
        let backend = PacedFile::new(file).map_err(|e| failed(e.into()))?;
        let db = redb::Database::builder()
            .set_cache_size(cache_bytes as usize)
            .create_with_backend(backend)
            .map_err(|e| failed(e.into()))?;
        Ok(TableFile {
            db: Arc::new(db),
            table: definition,
            side: None,
            path: path.to_path_buf(),
        })
    }

    /// Gives the file a second table, `name`, for what must commit at
    /// once with the first ([`TableFile::write_both`]); it is made by its
    /// first write, and [`TableFile::clear`] empties it too.
    pub fn with_side_table(mut self, name: &'static str) -> TableFile {
        self.side = Some(TableDefinition::new(name));
        self
    }

    /// Removes the file `path` (a rebuild makes it again from the log;
    /// what is in it, damaged or not, is not read). It loses its name
    /// first, at once, so that a removal killed half-way leaves no
    /// half-file under it; then it is shrunk a megabyte at a time, as
    /// every big file on the log's device.
    pub fn remove(path: &Path) -> std::io::Result<()> {
        let removed = beside(path, REMOVED);
        match std::fs::rename(path, &removed) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
            Ok(()) => sync_dir(path)?,
        }
        remove_leftover(&removed)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The error a read or write of this file gives, naming it.
    pub fn error(&self, source: impl Into<redb::Error>) -> TableFileError {
        TableFileError {
            path: self.path.clone(),
            source: source.into(),
        }
    }

    fn table(&self) -> Result<redb::ReadOnlyTable<&'static [u8], &'static [u8]>, redb::Error> {
        Ok(self.db.begin_read()?.open_table(self.table)?)
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, redb::Error> {
        Ok(self.table()?.get(key)?.map(|v| v.value().to_vec()))
    }

    /// The entries with keys in `range`, in key order (or reversed), each
    /// as (key, value); the read transaction lives as long as the
    /// iterator.
    pub fn range(&self, range: Range<&[u8]>) -> Result<Entries, redb::Error> {
        Ok(Entries(self.table()?.range_owned(range)?))
    }

    /// The entries whose key starts with `tag`.
    pub fn with_tag(&self, tag: u8) -> Result<Entries, redb::Error> {
        match tag.checked_add(1) {
            Some(next) => self.range(&[tag][..]..&[next][..]),
            None => Ok(Entries(self.table()?.range_owned(&[tag][..]..)?)),
        }
    }

    /// The value of `key` in the side table ([`TableFile::with_side_table`]);
    /// `None` also when the table was never written.
    pub fn get_side(&self, key: &[u8]) -> Result<Option<Vec<u8>>, redb::Error> {
        let Some(side) = self.side else {
            return Ok(None);
        };
        let table = match self.db.begin_read()?.open_table(side) {
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            opened => opened?,
        };
        let value = table.get(key)?.map(|v| v.value().to_vec());
        Ok(value)
    }

    pub fn len(&self) -> Result<u64, redb::Error> {
        Ok(self.table()?.len()?)
    }

    pub fn is_empty(&self) -> Result<bool, redb::Error> {
        Ok(self.len()? == 0)
    }

    /// Writes in one transaction; an error from `write` aborts it.
    /// `durable`: durable when this returns, and recording redb's
    /// allocator state (an open after a crash then needs no walk of the
    /// file). Otherwise readers see it at once and it becomes durable with
    /// the next durable commit (a crash before that loses it).
    pub fn write<E: From<TableFileError>>(
        &self,
        durable: bool,
        write: impl FnOnce(&mut Table<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        self.transaction(durable, |txn| {
            let mut table = txn.open_table(self.table).map_err(|e| self.error(e))?;
            write(&mut table)
        })
    }

    /// [`TableFile::write`] of the table and the side table
    /// ([`TableFile::with_side_table`]) in one transaction: both commit,
    /// or neither.
    pub fn write_both<E: From<TableFileError>>(
        &self,
        durable: bool,
        write: impl FnOnce(&mut Table<'_>, &mut Table<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let side = self.side.ok_or_else(|| {
            self.error(redb::Error::Io(std::io::Error::other(
                "the file was opened without a side table",
            )))
        })?;
        self.transaction(durable, |txn| {
            let mut table = txn.open_table(self.table).map_err(|e| self.error(e))?;
            let mut side = txn.open_table(side).map_err(|e| self.error(e))?;
            write(&mut table, &mut side)
        })
    }

    fn transaction<E: From<TableFileError>>(
        &self,
        durable: bool,
        write: impl FnOnce(&redb::WriteTransaction) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut txn = self.db.begin_write().map_err(|e| self.error(e))?;
        if durable {
            txn.set_durability(Durability::Immediate)
                .map_err(|e| self.error(e))?;
            txn.set_quick_repair(true);
        } else {
            txn.set_durability(Durability::None)
                .map_err(|e| self.error(e))?;
        }
        write(&txn)?;
        txn.commit().map_err(|e| self.error(e))?;
        Ok(())
    }

    /// Makes every commit before it durable.
    pub fn sync(&self) -> Result<(), TableFileError> {
        self.write(true, |_| Ok(()))
    }

    /// Removes every entry (the side table's too), durably.
    pub fn clear(&self) -> Result<(), TableFileError> {
        let mut txn = self.db.begin_write().map_err(|e| self.error(e))?;
        txn.set_quick_repair(true);
        txn.delete_table(self.table).map_err(|e| self.error(e))?;
        if let Some(side) = self.side {
            txn.delete_table(side).map_err(|e| self.error(e))?;
        }
        txn.open_table(self.table).map_err(|e| self.error(e))?;
        txn.commit().map_err(|e| self.error(e))?;
        Ok(())
    }

    /// Copies the entries of sled's tree `tree` (the layout before) here,
    /// durably, then `last` (what the copy completes, in a commit after
    /// it), then drops the tree from sled; returns the entries copied.
    /// Nothing to do when the tree is absent or empty; a crash before the
    /// drop leaves the tree, and the copy is made again (the same values).
    pub fn migrate_from(
        &self,
        db: &sled::Db,
        tree: &str,
        last: &[(&[u8], &[u8])],
    ) -> Result<usize, MigrateError> {
        if !db.tree_names().iter().any(|n| n == tree.as_bytes()) {
            return Ok(0);
        }
        let old = db.open_tree(tree)?;
        if old.is_empty() {
            drop(old);
            db.drop_tree(tree)?;
            return Ok(0);
        }
        let started = std::time::Instant::now();
        let mut copied = 0usize;
        let mut entries = old.iter();
        loop {
            let mut chunk = Vec::with_capacity(COPY_PER_COMMIT);
            for entry in entries.by_ref().take(COPY_PER_COMMIT) {
                chunk.push(entry?);
            }
            if chunk.is_empty() {
                break;
            }
            copied += chunk.len();
            self.write(true, |table| {
                for (key, value) in &chunk {
                    table
                        .insert(key.as_ref(), value.as_ref())
                        .map_err(|e| self.error(e))?;
                }
                Ok::<(), MigrateError>(())
            })?;
        }
        self.write(true, |table| {
            for (key, value) in last {
                table.insert(*key, *value).map_err(|e| self.error(e))?;
            }
            Ok::<(), MigrateError>(())
        })?;
        drop(old);
        db.drop_tree(tree)?;
        db.flush()?;
        tracing::info!(
            entries = copied,
            ms = started.elapsed().as_millis() as u64,
            "moved sled's `{tree}` tree to {}",
            self.path.display()
        );
        Ok(copied)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(transparent)]
    Sled(#[from] sled::Error),
    #[error(transparent)]
    File(#[from] TableFileError),
}

/// The entries of a range (see [`TableFile::range`]).
pub struct Entries(redb::OwnedRange<&'static [u8], &'static [u8]>);

pub type Entry = Result<(Vec<u8>, Vec<u8>), redb::StorageError>;

/// An entry as redb's range yields it.
type Guarded = (
    redb::OwnedAccessGuard<&'static [u8]>,
    redb::OwnedAccessGuard<&'static [u8]>,
);

fn owned(item: Result<Guarded, redb::StorageError>) -> Entry {
    item.map(|(k, v)| (k.value().to_vec(), v.value().to_vec()))
}

impl Iterator for Entries {
    type Item = Entry;

    fn next(&mut self) -> Option<Entry> {
        self.0.next().map(owned)
    }
}

impl DoubleEndedIterator for Entries {
    fn next_back(&mut self) -> Option<Entry> {
        self.0.next_back().map(owned)
    }
}

/// The name a file has while it is made, and the one it has while it is
/// removed: never opened as the table.
const NEW: &str = ".new";
const REMOVED: &str = ".removed";

/// `path` with `suffix` after its file name.
fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// Makes the file `path` whole or not at all. redb writes its header and
/// the empty table under another name (`<path>.new`, readable and
/// writable by its owner only: redb would create it with the umask's
/// mode), and the file takes its name once that is durable. A creation
/// killed half-way leaves only the other name, which the next open
/// removes; under `path` an open finds a file redb made whole, or none.
fn create(path: &Path, table: Definition) -> Result<(), redb::Error> {
    use std::os::unix::fs::OpenOptionsExt;
    let new = beside(path, NEW);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&new)?;
    let db = redb::Database::builder().create_with_backend(PacedFile::new(file)?)?;
    let mut tx = db.begin_write()?;
    tx.set_quick_repair(true);
    tx.open_table(table)?;
    tx.commit()?;
    drop(db);
    std::fs::rename(&new, path)?;
    // redb's commits sync the file's contents only; the name is the
    // directory's.
    sync_dir(path)?;
    Ok(())
}

/// Removes what a creation or a removal killed half-way left at `path`,
/// if anything.
fn remove_leftover(path: &Path) -> std::io::Result<()> {
    match crate::paced::remove(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        done => done,
    }
}

/// Makes the names in `path`'s directory durable.
fn sync_dir(path: &Path) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::File::open(dir)?.sync_all()
}
