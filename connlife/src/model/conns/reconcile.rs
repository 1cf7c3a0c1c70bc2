//! Reconciliation with the kernel's view (sock_diag joined with /proc fds): the start-up
//! snapshot, merged with what the events already named, and the later comparisons that correct
//! what drifted (each correction a `Change::Corrected`).
use std::borrow::Borrow;

use super::*;

impl Model {
    /// The start-up snapshot, applied after the events that were already queued: a socket
    /// the events already know (same tuple, or the same holder's connect still at local port
    /// 0) is merged, not added twice, and a socket whose close was among those events is not
    /// brought back.
    pub fn apply_snapshot<S: Borrow<SeenSocket>>(
        &mut self,
        sockets: &[S],
        started_ns: u64,
        now_ns: u64,
    ) -> Vec<Change> {
        let mut changes = Vec::new();
        let closed_since = self.closed_since(started_ns);
        let connecting = self.connecting();
        for s in sockets.iter().map(Borrow::borrow) {
            if let Some(id) = self.match_seen(s, &connecting) {
                let conn = self.conns.get_mut(&id).expect("indexed");
                let mut holders = Holders {
                    held: &mut self.held,
                    comms: &mut self.comms,
                };
                for o in &s.owners {
                    holders.add(conn, o.clone());
                }
                self.learn_tuple_of(id, s.local, s.remote);
                continue;
            }
            if !modelled(s.state) || closed_since.contains(&tuple_key(s.netns, s.local, s.remote)) {
                continue;
            }
            self.add_seen(s, now_ns, &mut changes);
        }
        changes
    }

    /// Compare the model with the kernel's view taken between `started_ns` and `now_ns` (the
    /// queued events up to `now_ns` already applied) and correct what drifted. Connections
    /// touched since `started_ns` are left alone: the view may predate their change; so are
    /// those of a network namespace the view did not look into (`looked_into`; `None`: all).
    pub fn reconcile<S: Borrow<SeenSocket>>(
        &mut self,
        seen: &[S],
        looked_into: Option<&[u32]>,
        started_ns: u64,
        now_ns: u64,
    ) -> Vec<Change> {
        let mut changes = Vec::new();
        let mut kernel: HashMap<TupleKey, &SeenSocket> = HashMap::default();
        for s in seen.iter().map(Borrow::borrow) {
            kernel.insert(tuple_key(s.netns, s.local, s.remote), s);
        }
        let mut matched: HashSet<TupleKey> = HashSet::new();
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in ids {
            let conn = &self.conns[&id];
            let key = conn.key();
            if kernel.contains_key(&key) {
                matched.insert(key);
            }
            if conn.touched_ns >= started_ns || looked_into.is_some_and(|ns| !ns.contains(&conn.netns)) {
                continue;
            }
            let in_flux =
                !tuple_complete(&key, conn.state) || matches!(conn.state, TcpState::SynSent | TcpState::SynRecv);
            if in_flux && now_ns.saturating_sub(conn.state_since_ns) < IN_FLUX_NS {
                continue;
            }
            let Some(s) = kernel.get(&key).copied() else {
                self.remove(id);
                changes.push(Change::Corrected(Correction::Vanished));
                continue;
            };
            if !modelled(s.state) {
                // TIME_WAIT or CLOSE in the kernel: the end was missed.
                self.finish(id, now_ns, &mut changes);
                changes.push(Change::Corrected(Correction::State));
                continue;
            }
            let conn = self.conns.get_mut(&id).expect("listed");
            if conn.state != s.state && conn.state != TcpState::Listen {
                conn.enter(s.state, now_ns);
                conn.touched_ns = now_ns;
                changes.push(Change::Corrected(Correction::State));
            }
            let mut holders = Holders {
                held: &mut self.held,
                comms: &mut self.comms,
            };
            if conn.state != TcpState::Listen && holders.set(conn, &s.owners) {
                if conn.holders.is_empty() && conn.fd_closed.is_none() && !conn.never_held() {
                    conn.set_fd_closed(now_ns);
                }
                conn.touched_ns = now_ns;
                changes.push(Change::Corrected(Correction::Holders));
            }
        }
        let closed_since = self.closed_since(started_ns);
        let connecting = self.connecting();
        for s in seen.iter().map(Borrow::borrow) {
            let key = tuple_key(s.netns, s.local, s.remote);
            if matched.contains(&key)
                || !modelled(s.state)
                || matches!(s.state, TcpState::SynSent | TcpState::SynRecv)
                || closed_since.contains(&key)
                || (s.owners.is_empty() && s.role != Role::Server)
            {
                continue;
            }
            if let Some(id) = self.match_seen(s, &connecting) {
                // The connect we know at local port 0, now with its port.
                self.learn_tuple_of(id, s.local, s.remote);
                continue;
            }
            self.add_seen(s, now_ns, &mut changes);
            changes.push(Change::Corrected(Correction::Appeared));
        }
        changes
    }

    /// Connections whose connect has not learned its local port yet: the only ones a view's
    /// socket can match other than by tuple (listed once per view, not per socket).
    fn connecting(&self) -> Vec<ConnId> {
        let mut ids: Vec<ConnId> = self
            .conns
            .values()
            .filter(|c| c.ends.local().port() == 0)
            .map(|c| c.id)
            .collect();
        // Oldest first, whatever the slots: a view's socket matches the oldest such connect.
        ids.sort_unstable();
        ids
    }

    /// Tuples of connections that ended at or after `ts`: a view taken before their end still
    /// lists them.
    pub(super) fn closed_since(&self, ts: u64) -> HashSet<TupleKey> {
        self.closed
            .iter()
            .rev()
            .take_while(|c| c.ended_ns >= ts)
            .map(|c| c.conn.key())
            .collect()
    }

    /// The live connection a kernel-reported socket is: same tuple, or the same holder's
    /// connect that has not learned its local port yet.
    pub(super) fn match_seen(&self, s: &SeenSocket, connecting: &[ConnId]) -> Option<ConnId> {
        if let Some(id) = self.by_tuple.get(&tuple_key(s.netns, s.local, s.remote), &self.conns) {
            return Some(id);
        }
        if s.state == TcpState::Listen {
            return None;
        }
        connecting
            .iter()
            .filter_map(|id| self.conns.get(id))
            .find(|c| {
                c.ends.local().port() == 0
                    && c.netns == s.netns
                    && c.ends.remote() == s.remote
                    && c.holders
                        .iter()
                        .any(|h| s.owners.iter().any(|o| o.tgid == h.tgid && o.fd == h.fd))
            })
            .map(|c| c.id)
    }

    pub(super) fn add_seen(&mut self, s: &SeenSocket, now_ns: u64, changes: &mut Vec<Change>) {
        let id = self.insert(
            Conn {
                id: 0,
                sk: None,
                netns: s.netns,
                ends: Ends::new(s.local.into(), s.remote.into()),
                role: s.role,
                holders: HolderList::new(),
                former: None,
                opened_ns: now_ns,
                age_exact: false,
                state: s.state,
                state_since_ns: now_ns,
                path: StatePath::starting(s.state, now_ns),
                fd_closed: None,
                usage: s.usage,
                exchanges_known: false,
                touched_ns: now_ns,
                origin: BornAt::default(),
            },
            changes,
        );
        let conn = self.conns.get_mut(&id).expect("inserted");
        let mut holders = Holders {
            held: &mut self.held,
            comms: &mut self.comms,
        };
        for o in &s.owners {
            holders.add(conn, o.clone());
        }
        changes.push(Change::Opened(id));
    }
}
