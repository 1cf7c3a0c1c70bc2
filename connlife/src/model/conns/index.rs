//! The model's indexes, tuple -> connection and socket -> connection, without copies of the
//! keys: a table holds the connections' slots only (conns/store.rs), hashed by the key of the
//! connection in each (verified against it on lookup), so an index costs 4 bytes a connection
//! (plus free slots) instead of a key and an id (44 + 8 bytes for a tuple). Every slot in an
//! index holds a connection of the model whose key has not changed since it was indexed.
use std::hash::{BuildHasher, Hash};

use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;

use super::*;

pub(super) use super::store::ConnStore as Conns;
use super::store::{slot_of, Slot};

/// What an index finds a connection by.
pub(super) trait IndexKey: Hash + PartialEq + Copy {
    /// The connection's key; `None` when it has none yet (its socket not named by the kernel).
    fn of(conn: &Conn) -> Option<Self>;
}

impl IndexKey for TupleKey {
    fn of(conn: &Conn) -> Option<Self> {
        Some(conn.key())
    }
}

/// The kernel's socket address.
impl IndexKey for u64 {
    fn of(conn: &Conn) -> Option<Self> {
        conn.sk()
    }
}

pub(super) struct Index<K>(HashTable<Slot>, std::marker::PhantomData<K>);

impl<K> Default for Index<K> {
    fn default() -> Self {
        Index(HashTable::new(), std::marker::PhantomData)
    }
}

fn hash<K: Hash>(key: &K) -> u64 {
    FxBuildHasher.hash_one(key)
}

/// The key of the connection in `slot`, if it has one.
fn key_in<K: IndexKey>(conns: &Conns, slot: Slot) -> Option<K> {
    conns.in_slot(slot).and_then(K::of)
}

impl<K: IndexKey> Index<K> {
    pub(super) fn get(&self, key: &K, conns: &Conns) -> Option<ConnId> {
        let slot = self.0.find(hash(key), |&slot| key_in(conns, slot) == Some(*key))?;
        conns.in_slot(*slot).map(|c| c.id)
    }

    /// Index `id` (stored in `conns` already) under `key`, in place of the connection indexed
    /// there before.
    pub(super) fn insert(&mut self, key: K, id: ConnId, conns: &Conns) {
        let at = hash(&key);
        let slot = slot_of(id);
        match self.0.find_mut(at, |&other| key_in(conns, other) == Some(key)) {
            Some(found) => *found = slot,
            None => {
                self.0
                    .insert_unique(at, slot, |&other| hash(&key_in::<K>(conns, other).expect("indexed")));
            }
        }
    }

    /// Forget `key` if it names `id` (another connection may have taken it since).
    pub(super) fn remove(&mut self, key: &K, id: ConnId) {
        if let Ok(entry) = self.0.find_entry(hash(key), |&other| other == slot_of(id)) {
            entry.remove();
        }
    }
}
