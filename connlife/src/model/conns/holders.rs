//! Holder bookkeeping: which processes hold a connection, with their fds, and how many live
//! connections each process holds (so fork and exit skip the scan for processes with none).
use super::*;

/// Holder bookkeeping, apart from the maps so it can run on a borrowed connection.
pub(super) struct Holders<'a> {
    pub(super) held: &'a mut HashMap<u32, u32>,
    pub(super) comms: &'a mut Comms,
}

/// Process names interned: every holder of a process shares one [`Comm`]. Names no holder
/// uses any more are dropped whenever the table has doubled since the last sweep.
#[derive(Default)]
pub(super) struct Comms {
    names: HashSet<Comm>,
    sweep_at: usize,
}

impl Comms {
    pub(super) fn intern(&mut self, comm: &str) -> Comm {
        if let Some(name) = self.names.get(comm) {
            return name.clone();
        }
        if self.names.len() >= self.sweep_at {
            self.names.retain(|name| Arc::strong_count(&name.0) > 1);
            self.sweep_at = (2 * self.names.len()).max(64);
        }
        let name = Comm::from(comm);
        self.names.insert(name.clone());
        name
    }
}

impl Holders<'_> {
    /// `tgid` holds `conn` (with `fd` when known). Fills a missing fd or comm of a known
    /// holder; returns whether a new holder was added.
    pub(super) fn add(&mut self, conn: &mut Conn, mut who: Owner) -> bool {
        who.comm = self.comms.intern(&who.comm);
        if let Some(h) = conn
            .holders
            .iter_mut()
            .find(|h| h.tgid == who.tgid && (h.fd == who.fd || h.fd.is_none() || who.fd.is_none()))
        {
            if h.fd.is_none() {
                h.fd = who.fd;
            }
            if h.comm.is_empty() {
                h.comm = who.comm;
            }
            return false;
        }
        if conn.holders.len() >= MAX_HOLDERS {
            return false;
        }
        if !conn.held_by(who.tgid) {
            *self.held.entry(who.tgid).or_default() += 1;
        }
        conn.holders.push(who);
        true
    }

    /// `tgid` let go of `fd` (any fd of it when `None`). Returns the holder removed.
    pub(super) fn remove(&mut self, conn: &mut Conn, tgid: u32, fd: Option<i32>) -> Option<Owner> {
        let at = conn
            .holders
            .iter()
            .position(|h| h.tgid == tgid && (fd.is_none() || h.fd.is_none() || h.fd == fd))?;
        let gone = conn.holders.remove(at);
        if !conn.held_by(tgid) {
            self.release(tgid);
        }
        Some(gone)
    }

    pub(super) fn release(&mut self, tgid: u32) {
        if let Some(n) = self.held.get_mut(&tgid) {
            *n -= 1;
            if *n == 0 {
                self.held.remove(&tgid);
            }
        }
    }

    /// Forget every holder of a connection leaving the model.
    pub(super) fn drop_all(&mut self, conn: &Conn) {
        let mut seen = Vec::with_capacity(conn.holders.len());
        for h in &conn.holders {
            if !seen.contains(&h.tgid) {
                seen.push(h.tgid);
                self.release(h.tgid);
            }
        }
    }

    /// Make `conn`'s holders exactly `owners` (reconciliation). Returns whether anything
    /// but a missing fd or comm changed.
    pub(super) fn set(&mut self, conn: &mut Conn, owners: &[Owner]) -> bool {
        let key = |hs: &[Owner]| {
            let mut v: Vec<u32> = hs.iter().map(|h| h.tgid).collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        let changed = key(&conn.holders) != key(owners)
            || conn
                .holders
                .iter()
                .any(|h| h.fd.is_some() && !owners.iter().any(|o| o.tgid == h.tgid && o.fd == h.fd));
        self.drop_all(conn);
        conn.holders.clear();
        for o in owners {
            self.add(conn, o.clone());
        }
        changed
    }
}
