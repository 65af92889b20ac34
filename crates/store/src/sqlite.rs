//! The SQLite backend: the engine over a durable SQLite database in WAL mode.
//!
//! # Guarantees
//! Each batch from the engine's writer thread is one transaction committed with
//! `synchronous=FULL`, so an acknowledged write has been fsynced and survives
//! `kill -9` and power loss; concurrent writers share that one fsync.
//!
//! # Caveats
//! Only the latest state is persisted: after a restart, watches from revisions before
//! the restart answer `Compacted` (clients relist, as they do after etcd compaction).

use crate::engine::{Durability, Engine};
use crate::memory::delegate_store;
use crate::{Event, EventKind, KeyValue, ListOptions, ListResult, Revision, Store, StoreError, WatchStream};
use async_trait::async_trait;
use bytes::Bytes;
use rusqlite::{Connection, params};
use std::collections::BTreeMap;
use std::path::Path;

/// A durable store in one SQLite file.
pub struct SqliteStore {
    engine: Engine,
}

struct SqliteDurability {
    conn: Connection,
}

impl Durability for SqliteDurability {
    fn commit(&mut self, changes: &[Event], revision: Revision) -> Result<(), String> {
        let tx = self.conn.transaction().map_err(|e| e.to_string())?;
        {
            let mut put = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO kv (key, value, create_revision, mod_revision) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(|e| e.to_string())?;
            let mut del = tx.prepare_cached("DELETE FROM kv WHERE key = ?1").map_err(|e| e.to_string())?;
            for ev in changes {
                match ev.kind {
                    EventKind::Delete => {
                        del.execute(params![ev.kv.key]).map_err(|e| e.to_string())?;
                    }
                    _ => {
                        put.execute(params![ev.kv.key, &ev.kv.value[..], ev.kv.create_revision, ev.kv.mod_revision])
                            .map_err(|e| e.to_string())?;
                    }
                }
            }
            tx.execute("UPDATE meta SET value = ?1 WHERE name = 'revision'", params![revision])
                .map_err(|e| e.to_string())?;
        }
        tx.commit().map_err(|e| e.to_string())
    }
}

fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl SqliteStore {
    /// Open (or create) the database at `path` and load it.
    ///
    /// # Errors
    /// `Backend` if the file cannot be opened or is not a vkube database.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with_history(path, 100_000)
    }

    /// Like [`SqliteStore::open`], keeping at most `history_limit` events for watches.
    ///
    /// # Errors
    /// `Backend` if the file cannot be opened or is not a vkube database.
    pub fn open_with_history(path: &Path, history_limit: usize) -> Result<Self, StoreError> {
        let conn = Connection::open(path).map_err(backend)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(backend)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(backend)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL, create_revision INTEGER NOT NULL, mod_revision INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
             INSERT OR IGNORE INTO meta (name, value) VALUES ('revision', 1);",
        )
        .map_err(backend)?;
        let revision: Revision =
            conn.query_row("SELECT value FROM meta WHERE name = 'revision'", [], |r| r.get(0)).map_err(backend)?;
        let mut data = BTreeMap::new();
        {
            let mut stmt = conn.prepare("SELECT key, value, create_revision, mod_revision FROM kv").map_err(backend)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(KeyValue {
                        key: r.get(0)?,
                        value: Bytes::from(r.get::<_, Vec<u8>>(1)?),
                        create_revision: r.get(2)?,
                        mod_revision: r.get(3)?,
                    })
                })
                .map_err(backend)?;
            for row in rows {
                let kv = row.map_err(backend)?;
                data.insert(kv.key.clone(), kv);
            }
        }
        Ok(SqliteStore { engine: Engine::start(data, revision, Box::new(SqliteDurability { conn }), history_limit) })
    }
}

delegate_store!(SqliteStore);
