//! Tests of the connection model with hand-made event orders.
use super::*;
use crate::kernel::event::Kind;
use TcpState::*;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn state(ts: u64, sk: u64, tgid: Option<u32>, old: TcpState, new: TcpState, l: &str, r: &str) -> KernelEvent {
    KernelEvent {
        kind: Kind::State,
        ts_ns: ts,
        sk,
        tgid,
        fd: tgid.map(|_| 5),
        comm: tgid.map(|_| "app".to_string()).unwrap_or_default().into(),
        netns: 1,
        role: Role::Client,
        old_state: Some(old),
        new_state: Some(new),
        local: Some(addr(l)),
        remote: Some(addr(r)),
        sock_use: Use::default(),
        ret: 0,
        syscall: None,
        child: None,
        origin: None,
        folded: None,
    }
}

/// A client connection from 10.0.0.2:`port` to 10.0.0.1:80, as a snapshot finds it.
pub(super) fn conn_at(port: u16) -> Conn {
    let mut m = Model::new(0, true);
    let seen = SeenSocket {
        netns: 1,
        local: addr(&format!("10.0.0.2:{port}")),
        remote: addr("10.0.0.1:80"),
        state: Established,
        role: Role::Client,
        owners: HolderList::new(),
        usage: Use::default(),
    };
    m.apply_snapshot(&[seen], 1000, 1000);
    let conn = m.conns().next().expect("found").clone();
    conn
}

fn client_path(m: &mut Model, sk: u64, l: &str) -> Vec<Change> {
    let r = "10.0.0.1:80";
    let mut all = Vec::new();
    all.extend(m.apply(&state(10, sk, Some(100), Close, SynSent, l, r)));
    all.extend(m.apply(&state(20, sk, Some(100), SynSent, Established, l, r)));
    all
}

#[test]
fn client_lifetime_closed_by_us() {
    let mut m = Model::new(0, true);
    client_path(&mut m, 1, "10.0.0.2:5000");
    let c = m.by_sk(1).unwrap();
    assert_eq!(
        (c.state, c.tgid(), c.fd(), c.age_exact),
        (Established, Some(100), Some(5), true)
    );
    let mut close = state(30, 1, None, Established, FinWait1, "10.0.0.2:5000", "10.0.0.1:80");
    m.apply(&close);
    close = state(40, 1, None, FinWait1, FinWait2, "10.0.0.2:5000", "10.0.0.1:80");
    m.apply(&close);
    let ch = m.apply(&state(50, 1, None, FinWait2, Close, "10.0.0.2:5000", "10.0.0.1:80"));
    let Some(&Change::Closed(id)) = ch.last() else {
        panic!("{ch:?}")
    };
    let c = m.closed.back().filter(|c| c.conn.id == id).expect("the newest closed");
    assert_eq!(c.reason, EndReason::ClosedByUs);
    assert_eq!(
        c.conn.owner().unwrap().tgid,
        100,
        "softirq events must not change the owner"
    );
    assert_eq!(
        c.conn.path.iter().map(|p| p.0).collect::<Vec<_>>(),
        vec![SynSent, Established, FinWait1, FinWait2, Close]
    );
    assert!(m.is_empty());
}

#[test]
fn softirq_task_never_becomes_owner() {
    let mut m = Model::new(0, true);
    // Server child: first seen in softirq with no owner, then accept names it.
    m.apply(&state(10, 7, None, Listen, SynRecv, "10.0.0.1:80", "10.0.0.2:5000"));
    assert_eq!(m.by_sk(7).unwrap().owner(), None);
    let mut acc = state(15, 7, Some(200), SynRecv, Established, "10.0.0.1:80", "10.0.0.2:5000");
    acc.kind = Kind::Accept;
    acc.role = Role::Server;
    m.apply(&acc);
    // Peer closes: softirq event carries the SOCKS owner (200), never current.
    m.apply(&state(
        20,
        7,
        Some(200),
        Established,
        CloseWait,
        "10.0.0.1:80",
        "10.0.0.2:5000",
    ));
    let c = m.by_sk(7).unwrap();
    assert_eq!((c.tgid(), c.role, c.state), (Some(200), Role::Server, CloseWait));
}

#[test]
fn out_of_order_event_does_not_regress_state() {
    let mut m = Model::new(0, true);
    client_path(&mut m, 1, "10.0.0.2:5000");
    m.apply(&state(
        40,
        1,
        Some(100),
        Established,
        CloseWait,
        "10.0.0.2:5000",
        "10.0.0.1:80",
    ));
    // An older event delivered late.
    m.apply(&state(
        30,
        1,
        Some(100),
        SynSent,
        Established,
        "10.0.0.2:5000",
        "10.0.0.1:80",
    ));
    assert_eq!(m.by_sk(1).unwrap().state, CloseWait);
}

#[test]
fn socket_address_reused_by_new_connection() {
    let mut m = Model::new(0, true);
    client_path(&mut m, 1, "10.0.0.2:5000");
    m.apply(&state(30, 1, None, Established, Close, "10.0.0.2:5000", "10.0.0.1:80"));
    client_path(&mut m, 1, "10.0.0.2:5001");
    assert_eq!(m.len(), 1);
    assert_eq!(m.closed.len(), 1);
    assert_eq!(m.by_sk(1).unwrap().local(), addr("10.0.0.2:5001"));
    assert_eq!(m.closed[0].reason, EndReason::Reset);
}

#[test]
fn snapshot_socket_adopted_by_first_event_and_not_counted_twice() {
    let mut m = Model::new(0, true);
    let seen = SeenSocket {
        netns: 1,
        local: addr("10.0.0.2:6000"),
        remote: addr("10.0.0.1:80"),
        state: Established,
        role: Role::Client,
        owners: smallvec::smallvec![Owner {
            tgid: 300,
            comm: "leaky".into(),
            fd: Some(9).into(),
        }],
        usage: Use::default(),
    };
    assert_eq!(m.apply_snapshot(std::slice::from_ref(&seen), 1000, 1000).len(), 1);
    assert!(!m.conns().next().unwrap().age_exact);
    // The peer closes: softirq event, owner unknown to the event.
    m.apply(&state(
        2000,
        55,
        None,
        Established,
        CloseWait,
        "10.0.0.2:6000",
        "10.0.0.1:80",
    ));
    assert_eq!(m.len(), 1);
    let c = m.by_sk(55).unwrap();
    assert_eq!((c.state, c.tgid(), c.fd()), (CloseWait, Some(300), Some(9)));
    // Snapshot taken again (after a loss burst): merged, not duplicated.
    m.apply_snapshot(&[seen], 3000, 3000);
    assert_eq!(m.len(), 1);
}

#[test]
fn close_with_no_prior_event_is_counted_not_invented() {
    let mut m = Model::new(0, true);
    let mut ev = state(10, 9, Some(1), Established, Established, "1.1.1.1:1", "2.2.2.2:2");
    ev.kind = Kind::FdClose;
    ev.local = None;
    ev.remote = None;
    assert!(m.apply(&ev).is_empty());
    assert_eq!((m.len(), m.unmatched), (0, 1));
}

#[test]
fn fd_close_after_peer_reset_is_recorded_on_closed_conn() {
    let mut m = Model::new(0, true);
    client_path(&mut m, 1, "10.0.0.2:5000");
    m.apply(&state(
        30,
        1,
        Some(100),
        Established,
        Close,
        "10.0.0.2:5000",
        "10.0.0.1:80",
    ));
    let mut ev = state(40, 1, Some(100), Close, Close, "10.0.0.2:5000", "10.0.0.1:80");
    ev.kind = Kind::FdClose;
    m.apply(&ev);
    assert_eq!(m.closed[0].conn.fd_closed_ns(), Some(40));
}

#[test]
fn pid_reuse_keeps_connections_apart() {
    let mut m = Model::new(0, true);
    client_path(&mut m, 1, "10.0.0.2:5000");
    let mut exit = state(30, 0, Some(100), Close, Close, "1.1.1.1:1", "2.2.2.2:2");
    exit.kind = Kind::Exit;
    let ch = m.apply(&exit);
    assert!(ch.iter().any(|c| matches!(c, Change::FdClosed { .. })));
    // A new process with the same pid opens a connection: new entry, old one keeps its close.
    client_path(&mut m, 2, "10.0.0.2:5002");
    assert_eq!(m.by_sk(1).unwrap().fd_closed_ns(), Some(30));
    assert_eq!(m.by_sk(2).unwrap().fd_closed_ns(), None);
}

#[test]
fn reconcile_drops_connections_whose_end_was_lost() {
    let mut m = Model::new(0, true);
    client_path(&mut m, 1, "10.0.0.2:5000");
    client_path(&mut m, 2, "10.0.0.2:5001");
    let still = SeenSocket {
        netns: 1,
        local: addr("10.0.0.2:5001"),
        remote: addr("10.0.0.1:80"),
        state: Established,
        role: Role::Client,
        owners: smallvec::smallvec![Owner {
            tgid: 100,
            comm: "app".into(),
            fd: Some(5).into(),
        }],
        usage: Use::default(),
    };
    let ch = m.reconcile(&[still], None, 100, 100);
    assert_eq!(ch, vec![Change::Corrected(Correction::Vanished)]);
    assert!(m.by_sk(1).is_none() && m.by_sk(2).is_some());
}

/// A view that did not look into a connection's netns (no traced process is left in it, only
/// orphans still ending) says nothing of it: it is left alone, not taken for vanished.
#[test]
fn reconcile_leaves_alone_the_netns_it_did_not_look_into() {
    let mut m = Model::new(0, true);
    client_path(&mut m, 1, "10.0.0.2:5000");
    let netns = m.by_sk(1).unwrap().netns;
    assert!(m.reconcile::<SeenSocket>(&[], Some(&[netns + 1]), 100, 100).is_empty());
    assert!(m.by_sk(1).is_some());
    let ch = m.reconcile::<SeenSocket>(&[], Some(&[netns]), 100, 100);
    assert_eq!(ch, vec![Change::Corrected(Correction::Vanished)]);
    assert!(m.by_sk(1).is_none());
}

#[test]
fn concurrent_connects_with_unassigned_local_port_stay_apart() {
    let mut m = Model::new(0, true);
    let r = "10.0.0.1:80";
    m.apply(&state(10, 1, Some(100), Close, SynSent, "10.0.0.2:0", r));
    m.apply(&state(11, 2, Some(100), Close, SynSent, "10.0.0.2:0", r));
    assert_eq!((m.len(), m.closed.len()), (2, 0));
    m.apply(&state(12, 1, Some(100), SynSent, Established, "10.0.0.2:5000", r));
    m.apply(&state(13, 2, Some(100), SynSent, Established, "10.0.0.2:5001", r));
    assert_eq!(m.by_sk(1).unwrap().local(), addr("10.0.0.2:5000"));
    assert_eq!(m.by_sk(2).unwrap().local(), addr("10.0.0.2:5001"));
}

/// Before 6.x the first event of an accepted socket carries the listener's tuple.
#[test]
fn accepted_child_with_listener_tuple_does_not_take_over_the_listener() {
    let mut m = Model::new(0, true);
    let listener = SeenSocket {
        netns: 1,
        local: addr("10.0.0.1:80"),
        remote: addr("0.0.0.0:0"),
        state: Listen,
        role: Role::Listener,
        owners: smallvec::smallvec![Owner {
            tgid: 7,
            comm: "srv".into(),
            fd: Some(3).into(),
        }],
        usage: Use::default(),
    };
    m.apply_snapshot(&[listener], 0, 0);
    m.apply(&state(10, 9, None, Listen, SynRecv, "10.0.0.1:80", "0.0.0.0:0"));
    m.apply(&state(
        11,
        9,
        None,
        SynRecv,
        Established,
        "10.0.0.1:80",
        "10.0.0.2:5000",
    ));
    assert_eq!(m.len(), 2, "listener and child");
    let child = m.by_sk(9).unwrap();
    assert_eq!((child.remote(), child.path.len()), (addr("10.0.0.2:5000"), 2));
    assert!(m.conns().any(|c| c.state == Listen && c.sk().is_none()));
}

#[test]
fn end_reason_names_match_the_json_schema() {
    for r in [
        EndReason::ClosedByUs,
        EndReason::ClosedByPeer,
        EndReason::Reset,
        EndReason::Unlistened,
    ] {
        assert_eq!(serde_json::to_value(r).unwrap(), r.name());
    }
}

#[test]
fn a_connection_costs_a_known_bounded_size() {
    let bytes = Model::bytes_per_conn();
    eprintln!("model: about {bytes} bytes per live connection");
    assert!(bytes <= 330, "{bytes}");
}

#[test]
fn eviction_is_counted_and_bounded() {
    let mut m = Model::new(3, true);
    for i in 0..10u64 {
        client_path(&mut m, 100 + i, &format!("10.0.0.2:{}", 5000 + i));
    }
    assert_eq!(m.len(), 3);
    assert_eq!(m.evicted, 7);
}

/// Property: whatever the interleaving of several sockets' events (each socket's own
/// events in order), every socket ends closed exactly once and the model ends empty.
#[test]
fn property_random_interleavings_close_every_socket_once() {
    let mut seed = 7u64;
    let mut rnd = move |n: usize| {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((seed >> 33) as usize) % n
    };
    let paths: [&[TcpState]; 3] = [
        &[SynSent, Established, FinWait1, FinWait2, Close],
        &[SynSent, Established, CloseWait, LastAck, Close],
        &[SynSent, Close],
    ];
    for round in 0..300 {
        let mut m = Model::new(0, true);
        let n = 1 + rnd(6);
        let mut queues: Vec<Vec<KernelEvent>> = (0..n)
            .map(|i| {
                let path = paths[rnd(3)];
                let mut prev = Close;
                let l = format!("10.0.0.2:{}", 4000 + i);
                path.iter()
                    .map(|&s| {
                        let e = state(0, 1 + i as u64, Some(9), prev, s, &l, "10.0.0.1:80");
                        prev = s;
                        e
                    })
                    .rev()
                    .collect()
            })
            .collect();
        let mut ts = 0;
        while queues.iter().any(|q| !q.is_empty()) {
            let q = rnd(n);
            if let Some(mut e) = queues[q].pop() {
                ts += 1;
                e.ts_ns = ts;
                m.apply(&e);
            }
        }
        assert!(m.is_empty(), "round {round}: {:?}", m.conns().collect::<Vec<_>>());
        assert_eq!(m.closed.len(), n, "round {round}");
    }
}

fn proc_event(kind: Kind, ts: u64, tgid: u32) -> KernelEvent {
    let mut e = state(ts, 0, Some(tgid), Close, Close, "0.0.0.0:0", "0.0.0.0:0");
    e.kind = kind;
    e.local = None;
    e.remote = None;
    e.old_state = None;
    e.new_state = None;
    e.fd = None;
    e
}

fn fork(ts: u64, parent: u32, child: u32) -> KernelEvent {
    let mut e = proc_event(Kind::Fork, ts, parent);
    e.child = Some(child);
    e
}

fn close_fd(ts: u64, sk: u64, tgid: u32, fd: i32) -> KernelEvent {
    let mut e = proc_event(Kind::FdClose, ts, tgid);
    e.sk = sk;
    e.fd = Some(fd);
    e
}

fn server_conn(m: &mut Model, sk: u64, tgid: u32, fd: i32, l: &str, r: &str) {
    m.apply(&state(10, sk, None, Listen, SynRecv, l, r));
    let mut acc = state(11, sk, Some(tgid), SynRecv, Established, l, r);
    acc.kind = Kind::Accept;
    acc.role = Role::Server;
    acc.fd = Some(fd);
    m.apply(&acc);
}

/// ForkingTCPServer: the parent accepts, forks, closes its copy; the child holds it.
#[test]
fn fork_per_connection_server_leaves_the_socket_on_the_child() {
    let mut m = Model::new(0, true);
    server_conn(&mut m, 7, 100, 4, "10.0.0.1:80", "10.0.0.2:5000");
    m.apply(&fork(20, 100, 101));
    let ch = m.apply(&close_fd(21, 7, 100, 4));
    assert!(ch.is_empty(), "the child still holds it: {ch:?}");
    let c = m.by_sk(7).unwrap();
    assert_eq!((c.tgid(), c.fd(), c.fd_closed_ns()), (Some(101), Some(4), None));
    assert!(!c.held_by(100));
    // The peer closes: the finding would name the child.
    m.apply(&state(
        30,
        7,
        Some(100),
        Established,
        CloseWait,
        "10.0.0.1:80",
        "10.0.0.2:5000",
    ));
    assert_eq!(m.by_sk(7).unwrap().tgid(), Some(101));
    // The child exits: now the fd is closed, and the child is the one that let go.
    let ch = m.apply(&proc_event(Kind::Exit, 40, 101));
    assert!(ch.iter().any(|c| matches!(c, Change::FdClosed { .. })));
    let c = m.by_sk(7).unwrap();
    assert_eq!((c.tgid(), c.fd_closed_ns()), (Some(101), Some(40)));
    assert!(!m.holds_any(100) && !m.holds_any(101));
}

#[test]
fn a_fork_of_a_process_without_sockets_changes_nothing() {
    let mut m = Model::new(0, true);
    client_path(&mut m, 1, "10.0.0.2:5000");
    m.apply(&fork(20, 555, 556));
    assert_eq!(m.by_sk(1).unwrap().holders.len(), 1);
}

/// A kernel address reused for a new connection whose predecessor's close was missed.
#[test]
fn birth_at_a_known_address_is_a_new_connection_and_a_counted_correction() {
    let mut m = Model::new(0, true);
    server_conn(&mut m, 9, 100, 4, "10.0.0.1:80", "10.0.0.2:5000");
    let ch = client_path(&mut m, 9, "10.0.0.1:6000");
    assert!(ch.contains(&Change::Corrected(Correction::Reborn)), "{ch:?}");
    let c = m.by_sk(9).unwrap();
    assert_eq!(
        c.path.iter().map(|p| p.0).collect::<Vec<_>>(),
        vec![SynSent, Established],
        "histories never merge"
    );
    assert_eq!((c.tgid(), c.role), (Some(100), Role::Client));
    assert_eq!(m.closed.len(), 1);
}

fn seen(l: &str, r: &str, st: TcpState, owners: &[(u32, i32)]) -> SeenSocket {
    SeenSocket {
        netns: 1,
        local: addr(l),
        remote: addr(r),
        state: st,
        role: Role::Client,
        owners: owners
            .iter()
            .map(|&(tgid, fd)| Owner {
                tgid,
                comm: "app".into(),
                fd: Some(fd).into(),
            })
            .collect(),
        usage: Use::default(),
    }
}

#[test]
fn reconcile_corrects_state_holders_and_adds_what_was_missed() {
    let mut m = Model::new(0, true);
    client_path(&mut m, 1, "10.0.0.2:5000");
    client_path(&mut m, 2, "10.0.0.2:5001");
    let view = [
        seen("10.0.0.2:5000", "10.0.0.1:80", CloseWait, &[(100, 5)]),
        seen("10.0.0.2:5001", "10.0.0.1:80", Established, &[(100, 5), (101, 5)]),
        seen("10.0.0.2:5002", "10.0.0.1:80", Established, &[(100, 8)]),
        seen("10.0.0.2:5003", "10.0.0.1:80", TimeWait, &[]),
    ];
    let mut got: Vec<Change> = m.reconcile(&view, None, 100, 110);
    got.retain(|c| matches!(c, Change::Corrected(_)));
    got.sort_by_key(|c| format!("{c:?}"));
    assert_eq!(
        got,
        vec![
            Change::Corrected(Correction::Appeared),
            Change::Corrected(Correction::Holders),
            Change::Corrected(Correction::State),
        ]
    );
    assert_eq!(m.by_sk(1).unwrap().state, CloseWait);
    assert_eq!(m.by_sk(2).unwrap().tgid(), Some(101));
    assert_eq!(m.len(), 3);
    // The same view again: nothing left to correct.
    let again: Vec<_> = m
        .reconcile(&view, None, 200, 210)
        .into_iter()
        .filter(|c| matches!(c, Change::Corrected(_)))
        .collect();
    assert!(again.is_empty(), "{again:?}");
}

#[test]
fn reconcile_leaves_alone_what_changed_while_the_view_was_taken() {
    let mut m = Model::new(0, true);
    client_path(&mut m, 1, "10.0.0.2:5000");
    // Closed at 60, after the view began at 50: the view still lists it.
    m.apply(&state(60, 1, None, Established, Close, "10.0.0.2:5000", "10.0.0.1:80"));
    // Opened at 55: the view (from 50) may not list it.
    m.apply(&state(55, 3, Some(100), Close, SynSent, "10.0.0.2:0", "10.0.0.1:80"));
    m.apply(&state(
        56,
        3,
        Some(100),
        SynSent,
        Established,
        "10.0.0.2:5009",
        "10.0.0.1:80",
    ));
    let view = [seen("10.0.0.2:5000", "10.0.0.1:80", Established, &[(100, 5)])];
    let ch = m.reconcile(&view, None, 50, 70);
    assert!(ch.is_empty(), "{ch:?}");
    assert_eq!(m.len(), 1);
}

/// A connection opened while connlife attached: its events and the snapshot name it once.
#[test]
fn attach_race_connection_counted_once() {
    let mut m = Model::new(0, true);
    // Still connecting when the events were drained (local port unknown).
    m.apply(&state(10, 1, Some(100), Close, SynSent, "10.0.0.2:0", "10.0.0.1:80"));
    let view = [seen("10.0.0.2:5000", "10.0.0.1:80", Established, &[(100, 5)])];
    m.apply_snapshot(&view, 5, 20);
    assert_eq!(m.len(), 1);
    m.apply(&state(
        21,
        1,
        Some(100),
        SynSent,
        Established,
        "10.0.0.2:5000",
        "10.0.0.1:80",
    ));
    assert_eq!(m.len(), 1);
    assert!(m.by_sk(1).unwrap().age_exact);
    // And a connection closed among the drained events is not brought back.
    let mut m = Model::new(0, true);
    client_path(&mut m, 1, "10.0.0.2:5000");
    m.apply(&state(30, 1, None, Established, Close, "10.0.0.2:5000", "10.0.0.1:80"));
    m.apply_snapshot(&view, 25, 40);
    assert!(m.is_empty());
}

#[test]
fn unaccepted_connection_is_held_by_nobody() {
    let mut m = Model::new(0, true);
    m.apply(&state(10, 7, None, Listen, SynRecv, "10.0.0.1:80", "10.0.0.2:5000"));
    m.apply(&state(
        11,
        7,
        None,
        SynRecv,
        Established,
        "10.0.0.1:80",
        "10.0.0.2:5000",
    ));
    m.apply(&state(
        12,
        7,
        None,
        Established,
        CloseWait,
        "10.0.0.1:80",
        "10.0.0.2:5000",
    ));
    let c = m.by_sk(7).unwrap();
    assert!(c.never_held());
    assert_eq!(c.tgid(), None);
}

#[test]
fn comms_interned_once_and_swept_when_unused() {
    let mut comms = holders::Comms::default();
    let a = comms.intern("nginx");
    let b = comms.intern("nginx");
    assert!(Arc::ptr_eq(&a.0, &b.0), "one copy per name");
    drop((a, b));
    // 64 names in use force a sweep, which drops the unused "nginx".
    let kept: Vec<_> = (0..64).map(|i| comms.intern(&format!("p{i}"))).collect();
    let again = comms.intern("nginx");
    assert_eq!(Arc::strong_count(&again.0), 2, "a fresh copy: the old one was swept");
    assert!(
        kept.iter().all(|k| Arc::strong_count(&k.0) == 2),
        "names in use are kept"
    );
}

#[test]
fn born_at_stands_for_the_origin_it_packs() {
    let origins = [
        None,
        Some((7, BirthOrigin::default())),
        Some((
            7,
            BirthOrigin {
                stack: Some(0),
                request_stack: Some(i32::MAX as u32),
                transport: Some(0xc000_1000),
            },
        )),
    ];
    for origin in origins {
        let packed = BornAt::from(origin);
        assert_eq!(Option::<(u32, BirthOrigin)>::from(packed), origin);
        assert_eq!(
            serde_json::to_string(&packed).unwrap(),
            serde_json::to_string(&origin).unwrap()
        );
    }
}

#[test]
fn tuple_index_names_the_newest_connection_at_a_tuple_and_forgets_only_its_own() {
    let mut m = Model::new(0, true);
    let seen: Vec<SeenSocket> = (0..1000)
        .map(|i| SeenSocket {
            netns: 1,
            local: addr(&format!("10.0.0.2:{}", 6000 + i)),
            remote: addr("10.0.0.1:80"),
            state: Established,
            role: Role::Client,
            owners: HolderList::new(),
            usage: Use::default(),
        })
        .collect();
    m.apply_snapshot(&seen, 1000, 1000);
    // Built one by one (the table grew and rehashed from the connections' own tuples).
    let mut index = index::Index::<TupleKey>::default();
    for c in m.conns.values() {
        index.insert(c.key(), c.id, &m.conns);
    }
    for c in m.conns.values() {
        assert_eq!(index.get(&c.key(), &m.conns), Some(c.id));
    }
    // A second connection at the first one's tuple takes its place.
    let first = m
        .by_tuple
        .get(&tuple_key(1, seen[0].local, seen[0].remote), &m.conns)
        .unwrap();
    let twin = m.conns[&first].clone();
    let key = twin.key();
    let twin = m.conns.insert(twin);
    index.insert(key, twin, &m.conns);
    assert_eq!(index.get(&key, &m.conns), Some(twin));
    index.remove(&key, first);
    assert_eq!(
        index.get(&key, &m.conns),
        Some(twin),
        "the replaced one forgets nothing"
    );
    index.remove(&key, twin);
    assert_eq!(index.get(&key, &m.conns), None);
    assert_eq!(
        index.get(&tuple_key(1, seen[1].local, seen[1].remote), &m.conns),
        m.by_tuple.get(&tuple_key(1, seen[1].local, seen[1].remote), &m.conns)
    );
}

#[test]
fn an_owner_fd_reads_back_as_the_option_it_stands_for() {
    for fd in [None, Some(0), Some(7), Some(i32::MAX)] {
        let packed = MaybeFd::from(fd);
        assert_eq!((packed.get(), packed.is_some(), packed == fd), (fd, fd.is_some(), true));
        let json = serde_json::to_string(&packed).unwrap();
        assert_eq!(json, serde_json::to_string(&fd).unwrap());
        assert_eq!(serde_json::from_str::<MaybeFd>(&json).unwrap(), packed);
    }
    // No fd is negative: a negative one is none, as the kernel's -1 is.
    assert_eq!(MaybeFd::from(Some(-1)), MaybeFd::NONE);
    assert_eq!(std::mem::size_of::<Owner>(), 16);
}
