//! The connection table: connections stored by value in fixed chunks of slots, a freed slot
//! reused, and a connection's id naming its slot. No allocation of its own per connection and
//! no id -> connection hash table: 0 bytes of table and 8 of allocator header less per
//! connection than a map of boxes, and an index entry is a 4-byte slot.
//!
//! An id is `seq << SLOT_BITS | slot`, `seq` counting every connection ever stored: ids are
//! never reused and still sort by age, as the plain counter they replace did.
use super::{Conn, ConnId};

const SLOT_BITS: u32 = 24;
const SLOT_MASK: u64 = (1 << SLOT_BITS) - 1;
/// Slots at most (16,777,216); the model evicts before it would need more.
pub(super) const MAX_SLOTS: usize = 1 << SLOT_BITS;
/// Connections per chunk: 512 x 200 bytes, about 100 KiB allocated at a time.
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
    free: Vec<Slot>,
    /// Slots made so far (in use or free).
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
            Some(slot) => slot,
            None => {
                let slot = self.slots;
                assert!(slot < MAX_SLOTS, "the model keeps under MAX_SLOTS connections");
                self.slots += 1;
                if self.chunks.last().is_none_or(|c| c.len() == CHUNK) {
                    self.chunks.push(Vec::with_capacity(CHUNK));
                }
                self.chunks.last_mut().expect("a chunk with room").push(None);
                slot as Slot
            }
        };
        self.next_seq += 1;
        let id = self.next_seq << SLOT_BITS | ConnId::from(slot);
        conn.id = id;
        let place = &mut self.chunks[slot as usize / CHUNK][slot as usize % CHUNK];
        debug_assert!(place.is_none(), "a free slot");
        *place = Some(conn);
        self.len += 1;
        id
    }

    pub(super) fn remove(&mut self, id: &ConnId) -> Option<Conn> {
        let slot = slot_of(*id);
        let place = self
            .chunks
            .get_mut(slot as usize / CHUNK)?
            .get_mut(slot as usize % CHUNK)?;
        if place.as_ref().is_none_or(|c| c.id != *id) {
            return None;
        }
        self.free.push(slot);
        self.len -= 1;
        place.take()
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
}
