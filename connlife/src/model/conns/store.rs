//! The connection table: connections stored by value in fixed chunks of slots, a freed slot
//! reused, and a connection's id naming its slot. No allocation of its own per connection and
//! no id -> connection hash table: 0 bytes of table and 8 of allocator header less per
//! connection than a map of boxes, and an index entry is a 4-byte slot.
//!
//! An id is `seq << SLOT_BITS | slot`, `seq` counting every connection ever stored: ids are
//! not reused and sort by age, as the plain counter they replace did (until `seq` wraps after
//! 2^43 connections: 2.8 years at 100,000 a second). A new connection takes the lowest free
//! slot, so after a spike the live ones gather at the start and the chunks left empty at the
//! end are given back.
use std::{cmp::Reverse, collections::BinaryHeap};

use super::{Conn, ConnId};

const SLOT_BITS: u32 = 21;
const SLOT_MASK: u64 = (1 << SLOT_BITS) - 1;
const SEQ_MASK: u64 = (1 << (64 - SLOT_BITS)) - 1;
/// Live connections at most (2,097,152); the model evicts before it would need more, and
/// `--max-conns` may not ask for more.
pub const MAX_SLOTS: usize = 1 << SLOT_BITS;
/// Connections per chunk: 512 x 192 bytes, 96 KiB allocated at a time.
const CHUNK: usize = 512;

/// The slot a connection's id names.
pub(super) type Slot = u32;

pub(super) fn slot_of(id: ConnId) -> Slot {
    (id & SLOT_MASK) as Slot
}

#[derive(Default)]
pub(super) struct ConnStore {
    /// Each allocated at its full size once, never moved or grown.
    chunks: Vec<Vec<Option<Conn>>>,
    /// Live connections in each chunk: a chunk at the end with none is given back.
    live: Vec<u16>,
    /// Free slots below `slots`, lowest first.
    free: BinaryHeap<Reverse<Slot>>,
    /// Slots made so far (in use or free): those of the chunks held.
    slots: usize,
    len: usize,
    next_seq: u64,
}

impl ConnStore {
    pub(super) fn len(&self) -> usize {
        self.len
    }
    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn at(&self, slot: Slot) -> Option<&Conn> {
        let slot = slot as usize;
        self.chunks.get(slot / CHUNK)?.get(slot % CHUNK)?.as_ref()
    }

    fn at_mut(&mut self, slot: Slot) -> Option<&mut Conn> {
        let slot = slot as usize;
        self.chunks.get_mut(slot / CHUNK)?.get_mut(slot % CHUNK)?.as_mut()
    }

    /// The connection in `slot`, whichever it is.
    pub(super) fn in_slot(&self, slot: Slot) -> Option<&Conn> {
        self.at(slot)
    }

    pub(super) fn get(&self, id: &ConnId) -> Option<&Conn> {
        self.at(slot_of(*id)).filter(|c| c.id == *id)
    }

    pub(super) fn get_mut(&mut self, id: &ConnId) -> Option<&mut Conn> {
        self.at_mut(slot_of(*id)).filter(|c| c.id == *id)
    }

    /// Store `conn` under a new id (written into it); returns the id. The caller keeps the
    /// table under [`MAX_SLOTS`].
    pub(super) fn insert(&mut self, mut conn: Conn) -> ConnId {
        let slot = match self.free.pop() {
            Some(Reverse(slot)) => slot,
            None => {
                let slot = self.slots;
                assert!(slot < MAX_SLOTS, "the model keeps under MAX_SLOTS connections");
                if slot.is_multiple_of(CHUNK) {
                    self.chunks.push(Vec::with_capacity(CHUNK));
                    self.live.push(0);
                }
                self.chunks.last_mut().expect("a chunk with room").push(None);
                self.slots += 1;
                slot as Slot
            }
        };
        self.next_seq = (self.next_seq + 1) & SEQ_MASK;
        let id = self.next_seq << SLOT_BITS | ConnId::from(slot);
        conn.id = id;
        let (chunk, at) = (slot as usize / CHUNK, slot as usize % CHUNK);
        debug_assert!(self.chunks[chunk][at].is_none(), "a free slot");
        self.chunks[chunk][at] = Some(conn);
        self.live[chunk] += 1;
        self.len += 1;
        id
    }

    pub(super) fn remove(&mut self, id: &ConnId) -> Option<Conn> {
        let slot = slot_of(*id);
        let chunk = slot as usize / CHUNK;
        let place = self.chunks.get_mut(chunk)?.get_mut(slot as usize % CHUNK)?;
        if place.as_ref().is_none_or(|c| c.id != *id) {
            return None;
        }
        let conn = place.take();
        self.live[chunk] -= 1;
        self.len -= 1;
        self.free.push(Reverse(slot));
        self.give_back_empty_chunks();
        conn
    }

    /// Drop the chunks at the end that hold no connection, and their slots from the free list.
    fn give_back_empty_chunks(&mut self) {
        let before = self.chunks.len();
        while self.live.last() == Some(&0) {
            self.live.pop();
            self.chunks.pop();
        }
        if self.chunks.len() < before {
            self.slots = self.chunks.len() * CHUNK;
            let slots = self.slots as Slot;
            self.free.retain(|&Reverse(slot)| slot < slots);
        }
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &Conn> {
        self.chunks.iter().flatten().flatten()
    }

    pub(super) fn values_mut(&mut self) -> impl Iterator<Item = &mut Conn> {
        self.chunks.iter_mut().flatten().flatten()
    }

    pub(super) fn keys(&self) -> impl Iterator<Item = &ConnId> {
        self.values().map(|c| &c.id)
    }
}

impl std::ops::Index<&ConnId> for ConnStore {
    type Output = Conn;
    fn index(&self, id: &ConnId) -> &Conn {
        self.get(id).expect("a stored connection")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_name_their_slot_are_never_reused_and_sort_by_age() {
        let mut store = ConnStore::default();
        let conn = |port| super::super::tests::conn_at(port);
        let ids: Vec<ConnId> = (0..CHUNK as u16 + 3).map(|i| store.insert(conn(i))).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert_eq!((store.len(), store.chunks.len()), (CHUNK + 3, 2));
        let gone = store.remove(&ids[7]).expect("stored");
        assert_eq!(gone.id, ids[7]);
        assert!(store.get(&ids[7]).is_none() && store.remove(&ids[7]).is_none());
        // The freed slot is reused under a new id; the old id names nothing.
        let newer = store.insert(conn(9999));
        assert_eq!(slot_of(newer), slot_of(ids[7]));
        assert!(newer > *ids.last().unwrap());
        assert!(store.get(&ids[7]).is_none());
        assert_eq!(store[&newer].local().port(), 9999);
        assert_eq!(store.values().count(), CHUNK + 3);
        assert_eq!(store.keys().filter(|id| **id == newer).count(), 1);
        assert_eq!(store.chunks.len(), 2, "no chunk more for a reused slot");
    }

    #[test]
    fn new_connections_take_the_lowest_free_slot_and_empty_chunks_at_the_end_go() {
        let mut store = ConnStore::default();
        let conn = |port| super::super::tests::conn_at(port);
        let ids: Vec<ConnId> = (0..3 * CHUNK as u16).map(|i| store.insert(conn(i))).collect();
        assert_eq!(store.chunks.len(), 3);
        // A spike gone but for one connection in the last chunk: the chunks stay.
        for id in &ids[..3 * CHUNK - 1] {
            store.remove(id).expect("stored");
        }
        assert_eq!((store.len(), store.chunks.len()), (1, 3));
        // New ones fill from the start.
        let low = store.insert(conn(1));
        assert_eq!(slot_of(low), 0);
        // The last one gone: the two empty chunks at the end are given back.
        store.remove(ids.last().unwrap()).expect("stored");
        assert_eq!((store.len(), store.chunks.len(), store.slots), (1, 1, CHUNK));
        assert!(store.free.iter().all(|&Reverse(s)| (s as usize) < CHUNK));
        assert_eq!(slot_of(store.insert(conn(2))), 1);
        assert_eq!(store.values().count(), 2);
        // Everything gone: nothing held.
        let all: Vec<ConnId> = store.keys().copied().collect();
        all.iter().for_each(|id| drop(store.remove(id)));
        assert_eq!((store.len(), store.chunks.len(), store.free.len()), (0, 0, 0));
        assert_eq!(slot_of(store.insert(conn(3))), 0);
    }
}
