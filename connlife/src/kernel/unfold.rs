//! Unfolding: a socket's steps that the kernel kept in its SOCKS entry instead of sending one
//! record each ([`connlife_common::Folded`]: SYN_SENT, SYN_RECV, FIN_WAIT, CLOSE_WAIT,
//! LAST_ACK, the accept, the owner's last close) become the events they stand for, in time
//! order, exactly as one record per change would have given them. They reach userspace in the
//! socket's next record or in a poll of its entry; [`Unfolder`] remembers what a poll already
//! gave, so the record that carries the same steps later does not give them twice. Pure: no
//! I/O, unit-tested below.
use std::collections::HashMap;

use connlife_common::{SockInfo, FOLDED_STEPS};
use smallvec::SmallVec;

use super::event::{BirthOrigin, KernelEvent, Kind, Role, TaskName, TcpState};

/// What a record or an entry holds folded, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Folded {
    /// The socket's identity across records, with its address.
    pub born_ns: u64,
    /// Number of the first step (steps sent before it are not here).
    pub seq: u32,
    /// The state before the first step (`None`: a socket first seen mid-life).
    pub from: Option<TcpState>,
    /// Inline: a record's steps are at most FOLDED_STEPS, and decoding one allocates nothing.
    pub steps: SmallVec<[(u64, TcpState); FOLDED_STEPS]>,
    pub accept_ns: Option<u64>,
    /// The fd accept() returned.
    pub accept_fd: Option<i32>,
    /// (time, fd) of the owner's last close.
    pub fd_closed: Option<(u64, i32)>,
}

impl Folded {
    /// Decode the kernel's form; `Err(state)` for a state number that is not one.
    pub fn from_raw(raw: &connlife_common::Folded) -> Result<Option<Folded>, u8> {
        let len = usize::from(raw.len).min(FOLDED_STEPS);
        if len == 0 && raw.accept_ns == 0 && raw.fd_closed_ns == 0 {
            return Ok(None);
        }
        let state = |v: u8| TcpState::try_from(v);
        let mut steps = SmallVec::new();
        for i in 0..len {
            steps.push((raw.step_ns[i], state(raw.step_state[i])?));
        }
        Ok(Some(Folded {
            born_ns: raw.born_ns,
            seq: raw.seq,
            from: (raw.from_state != 0).then(|| state(raw.from_state)).transpose()?,
            steps,
            accept_ns: (raw.accept_ns != 0).then_some(raw.accept_ns),
            accept_fd: (raw.accept_fd >= 0).then_some(raw.accept_fd),
            fd_closed: (raw.fd_closed_ns != 0).then_some((raw.fd_closed_ns, raw.closed_fd)),
        }))
    }

    /// The socket ends in these steps.
    fn ends(&self) -> bool {
        self.steps.last().is_some_and(|&(_, s)| s == TcpState::Close)
    }
}

/// What earlier polls of one socket's entry already gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Given {
    born_ns: u64,
    /// Steps numbered below this were given.
    next_seq: u32,
    accept: bool,
    fd_closed: bool,
}

/// Turns records and polled entries into events, each step once.
#[derive(Default)]
pub struct Unfolder {
    /// Only sockets a poll gave something for (a record's steps are never sent again, so the
    /// sockets known from records alone need nothing here).
    given: HashMap<u64, Given>,
}

/// Entries of [`Unfolder::given`] kept at most; past that the oldest sockets' are forgotten
/// (a socket that vanished without its last record), at worst one step given twice, which
/// the model takes as a late duplicate.
const GIVEN_MAX: usize = 65_536;

impl Unfolder {
    /// The events a ring-buffer record stands for, appended to `out`: itself when it folds
    /// nothing, otherwise its steps, accept and close in time order, without those a poll
    /// already gave.
    pub fn record(&mut self, mut ev: KernelEvent, out: &mut Vec<KernelEvent>) {
        match ev.folded.take() {
            Some(folded) => self.unfold(&ev, &folded, (0, u64::MAX), false, out),
            None => out.push(ev),
        }
    }

    /// What a poll of a known socket's entry adds: the steps after `after_ns` (the last change
    /// the model has of it: an older step is one a record already gave) and up to `until_ns`
    /// (later ones wait for the next poll or record), appended to `out`.
    pub fn entry(&mut self, sk: u64, info: &SockInfo, after_ns: u64, until_ns: u64, out: &mut Vec<KernelEvent>) {
        let Ok(Some(folded)) = Folded::from_raw(&info.folded) else {
            return;
        };
        let head = KernelEvent {
            kind: Kind::State,
            ts_ns: 0,
            sk,
            tgid: (info.tgid != 0).then_some(info.tgid),
            fd: (info.fd >= 0).then_some(info.fd),
            comm: TaskName::from_kernel(&info.comm),
            netns: info.netns,
            role: Role::try_from(info.role).unwrap_or_default(),
            old_state: None,
            new_state: None,
            local: None,
            remote: None,
            sock_use: info.sock_use,
            ret: 0,
            syscall: None,
            child: None,
            origin: BirthOrigin::from_raw(&info.origin),
            folded: None,
        };
        self.unfold(&head, &folded, (after_ns, until_ns), true, out);
    }

    /// `window`: (after, up to) the times of the steps to give.
    fn unfold(&mut self, head: &KernelEvent, f: &Folded, window: (u64, u64), poll: bool, out: &mut Vec<KernelEvent>) {
        let (after_ns, until_ns) = window;
        let known = self.given.get(&head.sk).copied().filter(|g| g.born_ns == f.born_ns);
        let given = known.unwrap_or(Given {
            born_ns: f.born_ns,
            next_seq: 0,
            accept: false,
            fd_closed: false,
        });
        enum Item {
            Step(Option<TcpState>, TcpState, u32),
            Accept,
            Close(i32),
        }
        let mut items: SmallVec<[(u64, Item); FOLDED_STEPS + 2]> = SmallVec::new();
        let mut prev = f.from;
        for (i, &(ts, state)) in f.steps.iter().enumerate() {
            let seq = f.seq.saturating_add(i as u32);
            if seq >= given.next_seq && ts <= until_ns && ts > after_ns {
                items.push((ts, Item::Step(prev, state, seq)));
            }
            prev = Some(state);
        }
        if let Some(ts) = f.accept_ns.filter(|&t| !given.accept && t <= until_ns) {
            items.push((ts, Item::Accept));
        }
        if let Some((ts, fd)) = f.fd_closed.filter(|&(t, _)| !given.fd_closed && t <= until_ns) {
            items.push((ts, Item::Close(fd)));
        }
        // Stable: a step and the close of the same instant keep the kernel's order.
        items.sort_by_key(|&(ts, _)| ts);

        let closed_fd = f.fd_closed.map(|(_, fd)| fd);
        let owner_fd = head.fd.or(closed_fd);
        let birth_origin = head.origin.filter(|_| f.accept_ns.is_none());
        let mut next = given;
        let state_at = |ts: u64| {
            let mut s = f.from;
            for &(t, st) in &f.steps {
                if t <= ts {
                    s = Some(st);
                }
            }
            s
        };
        for (ts, item) in items {
            let before_accept = f.accept_ns.is_some_and(|a| ts < a);
            let after_close = f.fd_closed.is_some_and(|(c, _)| ts >= c);
            let mut ev = KernelEvent {
                ts_ns: ts,
                old_state: None,
                new_state: None,
                origin: None,
                folded: None,
                ..head.clone()
            };
            if before_accept {
                (ev.tgid, ev.fd, ev.comm) = (None, None, TaskName::default());
            } else {
                ev.fd = if after_close { None } else { owner_fd };
            }
            match item {
                Item::Step(old, new, seq) => {
                    ev.kind = Kind::State;
                    (ev.old_state, ev.new_state) = (old, Some(new));
                    if matches!((old, new), (Some(TcpState::Close), TcpState::SynSent)) {
                        ev.origin = birth_origin;
                    }
                    next.next_seq = seq.saturating_add(1);
                }
                Item::Accept => {
                    ev.kind = Kind::Accept;
                    ev.role = Role::Server;
                    ev.new_state = state_at(ts);
                    ev.fd = f.accept_fd.or(owner_fd);
                    ev.origin = head.origin;
                    next.accept = true;
                }
                Item::Close(fd) => {
                    ev.kind = Kind::FdClose;
                    ev.fd = Some(fd);
                    next.fd_closed = true;
                }
            }
            out.push(ev);
        }
        // Remembered: what a poll gave beyond an accept. An accept alone is not (an idle
        // server's connections would fill this map): the driver polls no entry whose accept
        // the model already has, and the record that carries it again only names the holder
        // the model has.
        let beyond_accept = next.next_seq != given.next_seq || next.fd_closed != given.fd_closed;
        if f.ends() && next.next_seq >= f.seq.saturating_add(f.steps.len() as u32) {
            self.given.remove(&head.sk);
        } else if poll && beyond_accept && known.is_none() {
            if self.given.len() >= GIVEN_MAX {
                self.given.clear();
            }
            self.given.insert(head.sk, next);
        } else if known.is_some() && next != given {
            self.given.insert(head.sk, next);
        }
    }

    /// Sockets remembered.
    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.given.len()
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use connlife_common::{Origin, SockUse};

    use super::*;

    fn record(u: &mut Unfolder, ev: KernelEvent) -> Vec<KernelEvent> {
        let mut out = Vec::new();
        u.record(ev, &mut out);
        out
    }

    fn entry(u: &mut Unfolder, sk: u64, info: &SockInfo, after_ns: u64, until_ns: u64) -> Vec<KernelEvent> {
        let mut out = Vec::new();
        u.entry(sk, info, after_ns, until_ns, &mut out);
        out
    }

    fn head(sk: u64, folded: Folded) -> KernelEvent {
        KernelEvent {
            kind: Kind::State,
            ts_ns: folded.steps.last().map_or(0, |s| s.0),
            sk,
            tgid: Some(42),
            fd: Some(7),
            comm: "client".into(),
            netns: 1,
            role: Role::Client,
            old_state: None,
            new_state: folded.steps.last().map(|s| s.1),
            local: Some("127.0.0.1:40000".parse::<SocketAddr>().unwrap()),
            remote: Some("127.0.0.1:80".parse::<SocketAddr>().unwrap()),
            sock_use: SockUse::default(),
            ret: 0,
            syscall: None,
            child: None,
            origin: None,
            folded: Some(Box::new(folded)),
        }
    }

    fn path(ev: &[KernelEvent]) -> Vec<(Kind, Option<TcpState>, Option<TcpState>, u64)> {
        ev.iter().map(|e| (e.kind, e.old_state, e.new_state, e.ts_ns)).collect()
    }

    use TcpState::*;

    /// Steps folded since step `seq`, nothing else.
    fn folded(born_ns: u64, seq: u32, from: Option<TcpState>, steps: Vec<(u64, TcpState)>) -> Folded {
        Folded {
            born_ns,
            seq,
            from,
            steps: steps.into(),
            accept_ns: None,
            accept_fd: None,
            fd_closed: None,
        }
    }

    #[test]
    fn a_record_without_folded_steps_is_itself() {
        let mut ev = head(1, folded(1, 0, None, vec![]));
        ev.folded = None;
        assert_eq!(record(&mut Unfolder::default(), ev.clone()), vec![ev]);
    }

    #[test]
    fn a_client_birth_and_end_unfold_into_every_change_with_the_close_in_its_place() {
        let mut u = Unfolder::default();
        let mut birth = head(1, folded(10, 0, Some(Close), vec![(10, SynSent), (20, Established)]));
        birth.origin = Some(BirthOrigin {
            stack: Some(3),
            ..Default::default()
        });
        let got = record(&mut u, birth);
        assert_eq!(
            path(&got),
            vec![
                (Kind::State, Some(Close), Some(SynSent), 10),
                (Kind::State, Some(SynSent), Some(Established), 20)
            ]
        );
        assert_eq!(got[0].origin.unwrap().stack, Some(3), "the origin rides on the birth");
        assert_eq!(got[1].origin, None);
        assert_eq!(got[0].tgid, Some(42));

        let mut end = head(
            1,
            Folded {
                fd_closed: Some((40, 7)),
                ..folded(
                    10,
                    2,
                    Some(Established),
                    vec![(40, FinWait1), (50, FinWait2), (60, Close)],
                )
            },
        );
        end.fd = None;
        let got = record(&mut u, end);
        assert_eq!(
            path(&got),
            vec![
                (Kind::State, Some(Established), Some(FinWait1), 40),
                (Kind::FdClose, None, None, 40),
                (Kind::State, Some(FinWait1), Some(FinWait2), 50),
                (Kind::State, Some(FinWait2), Some(Close), 60),
            ]
        );
        assert_eq!(got[1].fd, Some(7), "the close names the fd it closed");
        assert_eq!(got[2].fd, None, "after the close the owner holds no fd");
        assert_eq!(u.remembered(), 0);
    }

    #[test]
    fn a_server_is_ownerless_until_its_accept() {
        let mut u = Unfolder::default();
        let mut rec = head(
            2,
            Folded {
                accept_ns: Some(20),
                fd_closed: Some((44, 9)),
                ..folded(
                    5,
                    1,
                    Some(Established),
                    vec![(30, CloseWait), (45, LastAck), (50, Close)],
                )
            },
        );
        rec.role = Role::Server;
        rec.fd = None;
        rec.origin = Some(BirthOrigin {
            stack: Some(8),
            ..Default::default()
        });
        let got = record(&mut u, rec);
        assert_eq!(
            path(&got),
            vec![
                (Kind::Accept, None, Some(Established), 20),
                (Kind::State, Some(Established), Some(CloseWait), 30),
                (Kind::FdClose, None, None, 44),
                (Kind::State, Some(CloseWait), Some(LastAck), 45),
                (Kind::State, Some(LastAck), Some(Close), 50),
            ]
        );
        assert_eq!(
            (got[0].tgid, got[0].fd),
            (Some(42), Some(9)),
            "accept names the owner and its fd"
        );
        assert_eq!(
            got[0].origin.unwrap().stack,
            Some(8),
            "a server's origin is its accept's"
        );
        assert_eq!(got[1].fd, Some(9));
        assert_eq!(got[2].fd, Some(9));
    }

    #[test]
    fn steps_before_the_accept_have_no_owner() {
        let mut u = Unfolder::default();
        let mut rec = head(
            3,
            Folded {
                accept_ns: Some(7),
                ..folded(5, 0, Some(Listen), vec![(5, SynRecv), (6, Established), (9, Close)])
            },
        );
        rec.role = Role::Server;
        let got = record(&mut u, rec);
        assert_eq!(got[0].tgid, None);
        assert_eq!(got[1].tgid, None);
        assert_eq!(got[2].kind, Kind::Accept);
        assert_eq!(got[3].tgid, Some(42));
    }

    fn info(folded: connlife_common::Folded) -> SockInfo {
        SockInfo {
            tgid: 42,
            fd: 7,
            comm: *b"client\0\0\0\0\0\0\0\0\0\0",
            netns: 1,
            role: Role::Client as u8,
            reported: 1,
            _pad: [0; 2],
            sock_use: SockUse::default(),
            origin: Origin::NONE,
            folded,
        }
    }

    fn raw(born: u64, seq: u32, from: TcpState, steps: &[(u64, TcpState)]) -> connlife_common::Folded {
        let mut f = connlife_common::Folded::EMPTY;
        f.born_ns = born;
        f.seq = seq;
        f.from_state = from as u8;
        for (i, &(t, s)) in steps.iter().enumerate() {
            f.step_ns[i] = t;
            f.step_state[i] = s as u8;
        }
        f.len = steps.len() as u8;
        f
    }

    #[test]
    fn a_poll_gives_each_step_once_and_the_record_only_the_rest() {
        let mut u = Unfolder::default();
        let polled = entry(
            &mut u,
            4,
            &info(raw(10, 2, Established, &[(30, CloseWait)])),
            0,
            u64::MAX,
        );
        assert_eq!(
            path(&polled),
            vec![(Kind::State, Some(Established), Some(CloseWait), 30)]
        );
        assert!(
            entry(
                &mut u,
                4,
                &info(raw(10, 2, Established, &[(30, CloseWait)])),
                0,
                u64::MAX
            )
            .is_empty(),
            "polled twice, given once"
        );

        let rec = head(
            4,
            Folded {
                fd_closed: Some((44, 7)),
                ..folded(
                    10,
                    2,
                    Some(Established),
                    vec![(30, CloseWait), (45, LastAck), (50, Close)],
                )
            },
        );
        let got = record(&mut u, rec);
        assert_eq!(
            path(&got),
            vec![
                (Kind::FdClose, None, None, 44),
                (Kind::State, Some(CloseWait), Some(LastAck), 45),
                (Kind::State, Some(LastAck), Some(Close), 50)
            ]
        );
        assert_eq!(u.remembered(), 0, "forgotten at its end");
    }

    #[test]
    fn a_poll_stops_at_its_cutoff_and_a_new_socket_at_the_same_address_starts_over() {
        let mut u = Unfolder::default();
        let e = info(raw(10, 2, Established, &[(30, CloseWait), (40, LastAck)]));
        assert_eq!(entry(&mut u, 5, &e, 0, 35).len(), 1);
        assert_eq!(
            path(&entry(&mut u, 5, &e, 0, u64::MAX)),
            vec![(Kind::State, Some(CloseWait), Some(LastAck), 40)]
        );
        // Another socket born at the same kernel address: nothing of the first applies.
        let again = info(raw(99, 2, Established, &[(100, CloseWait)]));
        assert_eq!(entry(&mut u, 5, &again, 0, u64::MAX).len(), 1);
    }

    #[test]
    fn a_poll_gives_no_step_older_than_the_model_has() {
        // A torn read (the entry rewritten while copied) can pair a new step count with a
        // step left from the previous record: older than the last change the model has, it is
        // not given, and not counted as given (the record that carries the real one gives it).
        let mut u = Unfolder::default();
        let torn = info(raw(10, 2, Established, &[(20, Established)]));
        assert!(entry(&mut u, 6, &torn, 25, u64::MAX).is_empty());
        let rec = head(6, folded(10, 2, Some(Established), vec![(30, CloseWait)]));
        assert_eq!(
            path(&record(&mut u, rec)),
            vec![(Kind::State, Some(Established), Some(CloseWait), 30)]
        );
    }

    #[test]
    fn undecodable_states_are_an_error() {
        let mut f = raw(1, 0, Close, &[(1, SynSent)]);
        f.step_state[0] = 77;
        assert_eq!(Folded::from_raw(&f), Err(77));
        assert_eq!(Folded::from_raw(&connlife_common::Folded::EMPTY), Ok(None));
    }
}
