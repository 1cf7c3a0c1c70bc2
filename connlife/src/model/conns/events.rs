//! Kernel events applied to the model: state changes, accept and first use, fd closes,
//! forks and exits, and the identity rules (births, tuples learned later).
use super::*;

impl Model {
    pub(super) fn on_fd_close(&mut self, ev: &KernelEvent, changes: &mut Vec<Change>) {
        let id = self
            .by_sk
            .get(&ev.sk, &self.conns)
            .or_else(|| self.tuple_of(ev).and_then(|k| self.by_tuple.get(&k, &self.conns)));
        let Some(conn) = id.and_then(|id| self.conns.get_mut(&id)) else {
            // A socket that already ended (reset by the peer) or that we never saw.
            return self.mark_closed_fd(ev);
        };
        conn.touched_ns = conn.touched_ns.max(ev.ts_ns);
        let closer = ev.tgid.unwrap_or(0);
        let mut holders = Holders {
            held: &mut self.held,
            comms: &mut self.comms,
        };
        let gone = match holders.remove(conn, closer, ev.fd) {
            Some(gone) => gone,
            // Nobody was known to hold it: the closer did.
            None if conn.holders.is_empty() => Owner {
                tgid: closer,
                comm: self.comms.intern(&ev.comm),
                fd: ev.fd.into(),
            },
            // A process we did not know held it let go: the known holders still have it.
            None => return,
        };
        let_go(conn, Some(gone), ev.ts_ns, changes);
    }

    pub(super) fn on_state(&mut self, ev: &KernelEvent, changes: &mut Vec<Change>) {
        let (Some(new), old) = (ev.new_state, ev.old_state) else {
            self.unmatched += 1;
            return;
        };
        let id = match self.by_sk.get(&ev.sk, &self.conns) {
            // A birth at an address we still track: a new socket. The old one's end was
            // never seen (it would have left the model at CLOSE).
            Some(id) if is_birth(old, new) => {
                self.finish(id, ev.ts_ns, changes);
                changes.push(Change::Corrected(Correction::Reborn));
                None
            }
            other => other,
        };
        let (id, fresh) = match id {
            Some(id) => (id, false),
            None => match self.find_or_open(ev, changes) {
                Some(found) => found,
                None => return,
            },
        };
        // A fresh connection already entered `new`; a known one learns from the event.
        if !fresh {
            self.update_from_state_event(id, ev, new);
        }
        changes.push(Change::Transition {
            id,
            from: old,
            to: new,
            ts_ns: ev.ts_ns,
        });
        if new == TcpState::Close {
            self.finish(id, ev.ts_ns, changes);
        }
    }

    /// A known connection's tuple, holders, use, role and state path, from a state event.
    fn update_from_state_event(&mut self, id: ConnId, ev: &KernelEvent, new: TcpState) {
        self.learn_tuple(id, ev);
        let conn = self.conns.get_mut(&id).expect("indexed");
        conn.touched_ns = conn.touched_ns.max(ev.ts_ns);
        if conn.never_held() {
            if let Some(o) = event_owner(ev, &mut self.comms) {
                Holders {
                    held: &mut self.held,
                    comms: &mut self.comms,
                }
                .add(conn, o);
            }
        } else if let Some(o) = event_owner(ev, &mut self.comms).filter(|o| o.fd.is_some()) {
            // The kernel learned the fd later (connect's fd, accept): fill, never replace.
            if let Some(h) = conn.holders.iter_mut().find(|h| h.tgid == o.tgid && h.fd.is_none()) {
                h.fd = o.fd;
            }
        }
        absorb_use(conn, ev.sock_use);
        if conn.role == Role::Unknown {
            conn.role = ev.role;
        }
        if ev.ts_ns < conn.state_since_ns && new != TcpState::Close {
            // Arrived late (another CPU): keep it in the path at its place, do not go back.
            let at = conn
                .path
                .iter()
                .position(|(_, t)| t > ev.ts_ns)
                .unwrap_or(conn.path.len());
            if conn.path.len() < MAX_PATH {
                conn.path.insert(at, (new, ev.ts_ns));
            }
        } else {
            conn.enter(new, ev.ts_ns.max(conn.state_since_ns));
        }
    }

    /// Complete a connection's tuple from a later event: at SYN_SENT the kernel has not picked
    /// the local port yet (it shows :0), and before 6.x the first event of an accepted socket
    /// (LISTEN -> SYN_RECV) still carries the listener's addresses (remote 0.0.0.0:0).
    pub(super) fn learn_tuple(&mut self, id: ConnId, ev: &KernelEvent) {
        if let (Some(local), Some(remote)) = (ev.local, ev.remote) {
            self.learn_tuple_of(id, local, remote);
        }
    }

    pub(super) fn learn_tuple_of(&mut self, id: ConnId, local: SocketAddr, remote: SocketAddr) {
        let Some(conn) = self.conns.get_mut(&id) else { return };
        let old = conn.key();
        if conn.ends.local().port() == 0 && local.port() != 0 {
            conn.ends.set_local(local.into());
        }
        if conn.ends.remote().port() == 0 && remote.port() != 0 && conn.state != TcpState::Listen {
            conn.ends.set_remote(remote.into());
        }
        let new = conn.key();
        if new != old {
            self.by_tuple.remove(&old, id);
            if tuple_complete(&new, conn.state) {
                self.by_tuple.insert(new, id, &self.conns);
            }
        }
    }

    pub(super) fn tuple_of(&self, ev: &KernelEvent) -> Option<TupleKey> {
        Some(tuple_key(ev.netns, ev.local?, ev.remote?))
    }

    /// The connection an event names by sk, or by tuple (snapshot-found), or a new one
    /// (`true` when it was opened here).
    pub(super) fn find_or_open(&mut self, ev: &KernelEvent, changes: &mut Vec<Change>) -> Option<(ConnId, bool)> {
        if let Some(id) = self.by_sk.get(&ev.sk, &self.conns) {
            return Some((id, false));
        }
        let Some(key) = self.tuple_of(ev) else {
            self.unmatched += 1;
            return None;
        };
        // A birth is a new socket: never the snapshot's (nor a listener sharing its tuple).
        let birth = ev.kind == Kind::State
            && matches!((ev.old_state, ev.new_state), (Some(o), Some(n)) if is_birth(Some(o), n));
        if let Some(id) = self.by_tuple.get(&key, &self.conns).filter(|_| !birth) {
            let conn = self.conns.get_mut(&id).expect("indexed");
            if conn.sk.is_none() {
                conn.sk = NonZeroU64::new(ev.sk);
                if conn.sk.is_some() {
                    self.by_sk.insert(ev.sk, id, &self.conns);
                }
                return Some((id, false));
            }
            // Same tuple, different socket: the old one is gone (TIME_WAIT reuse).
            self.finish(id, ev.ts_ns, changes);
        }
        let state = ev.new_state.unwrap_or(TcpState::Established);
        // Opened now if we saw it from CLOSE or LISTEN (its birth); otherwise it predates us.
        let born_here = matches!(ev.old_state, Some(TcpState::Close) | Some(TcpState::Listen))
            || matches!(
                ev.new_state,
                Some(TcpState::SynSent | TcpState::SynRecv | TcpState::Listen)
            );
        let id = self.insert(
            Conn {
                id: 0,
                sk: NonZeroU64::new(ev.sk),
                netns: ev.netns,
                ends: Ends::new(key.1, key.2),
                role: ev.role,
                holders: HolderList::new(),
                former: None,
                opened_ns: ev.ts_ns,
                age_exact: born_here && ev.kind == Kind::State,
                state,
                state_since_ns: ev.ts_ns,
                path: StatePath::starting(state, ev.ts_ns),
                fd_closed: None,
                usage: ev.sock_use,
                // The kernel starts counting at accept() too, before any data.
                exchanges_known: self.use_counting && (born_here && ev.kind == Kind::State || ev.kind == Kind::Accept),
                touched_ns: ev.ts_ns,
                origin: ev.origin.zip(ev.tgid).map(|(o, pid)| (pid, o)).into(),
            },
            changes,
        );
        if let Some(o) = event_owner(ev, &mut self.comms) {
            let conn = self.conns.get_mut(&id).expect("inserted");
            Holders {
                held: &mut self.held,
                comms: &mut self.comms,
            }
            .add(conn, o);
        }
        changes.push(Change::Opened(id));
        Some((id, true))
    }

    /// close() on a socket that already ended: record it on the closed entry if we have it.
    pub(super) fn mark_closed_fd(&mut self, ev: &KernelEvent) {
        match self
            .closed
            .iter_mut()
            .rev()
            .find(|c| c.conn.sk() == Some(ev.sk) && c.conn.fd_closed.is_none())
        {
            Some(c) => c.conn.set_fd_closed(ev.ts_ns),
            None => self.unmatched += 1,
        }
    }

    /// A traced process forked: the child holds a copy of every socket the parent holds, at
    /// the same fds.
    pub(super) fn on_fork(&mut self, ev: &KernelEvent, changes: &mut Vec<Change>) {
        let (Some(parent), Some(child)) = (ev.tgid, ev.child) else {
            self.unmatched += 1;
            return;
        };
        if self.holds_any(parent) {
            let mut holders = Holders {
                held: &mut self.held,
                comms: &mut self.comms,
            };
            for conn in self.conns.values_mut().filter(|c| c.held_by(parent)) {
                let copies: Vec<Owner> = conn
                    .holders
                    .iter()
                    .filter(|h| h.tgid == parent)
                    .map(|h| Owner {
                        tgid: child,
                        ..h.clone()
                    })
                    .collect();
                for copy in copies {
                    holders.add(conn, copy);
                }
                conn.touched_ns = conn.touched_ns.max(ev.ts_ns);
            }
        }
        changes.push(Change::Forked {
            parent,
            child,
            comm: ev.comm.to_string(),
            ts_ns: ev.ts_ns,
        });
    }

    /// Process exit closes every fd it held; a socket another process still holds lives on.
    pub(super) fn on_exit(&mut self, ev: &KernelEvent, changes: &mut Vec<Change>) {
        let Some(tgid) = ev.tgid else {
            return;
        };
        let mut held = 0;
        if self.holds_any(tgid) {
            let mut holders = Holders {
                held: &mut self.held,
                comms: &mut self.comms,
            };
            for conn in self.conns.values_mut().filter(|c| c.held_by(tgid)) {
                let mut gone = None;
                while let Some(g) = holders.remove(conn, tgid, None) {
                    gone = Some(g);
                }
                held += 1;
                conn.touched_ns = conn.touched_ns.max(ev.ts_ns);
                let_go(conn, gone, ev.ts_ns, changes);
            }
        }
        changes.push(Change::ProcessExit {
            tgid,
            comm: ev.comm.to_string(),
            status: ev.ret,
            ts_ns: ev.ts_ns,
            held,
        });
    }
}

/// The last holder let go of `conn`: its fd is closed, and `gone` is who closed it.
fn let_go(conn: &mut Conn, gone: Option<Owner>, ts_ns: u64, changes: &mut Vec<Change>) {
    if conn.holders.is_empty() && conn.fd_closed.is_none() {
        conn.former = gone.map(Box::new);
        conn.set_fd_closed(ts_ns);
        changes.push(Change::FdClosed { id: conn.id, ts_ns });
    }
}
