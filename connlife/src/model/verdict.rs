//! The post-mortem's judgment (pure): what a process held when it ended, classified per remote
//! and state, and the leak patterns named from those facts alone, whether or not a detector's
//! threshold had passed (a process that dies of fd exhaustion 1.2 s after its first request
//! never reaches `--idle-after`). The same rules name a group's pattern while it runs, so a
//! fixed, pre-warmed pool is "an idle pool" everywhere and never "a new pool per request".
use serde::{Deserialize, Serialize};

use crate::{
    kernel::event::{Role, TcpState},
    model::origins::{transport_per_request, Origin, HINT_TRANSPORT_PER_REQUEST},
};

/// Open connections at the end, grouped by state, role, remote and origin.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OpenGroup {
    pub state: TcpState,
    pub role: Role,
    pub raddr: String,
    pub count: u32,
    pub oldest_s: f64,
    pub newest_s: f64,
    pub fds: Vec<i32>,
    /// Average exchanges per connection, where counted (`null`: unknown for all of them).
    pub exchanges_per_conn: Option<f64>,
    /// Connections used for at most one exchange (counted ones only).
    pub unreused: u32,
    /// Connections whose exchanges were counted from their start (the others predate
    /// connlife, or the kernel lacks the send/recv tracepoints).
    #[serde(default)]
    pub counted: u32,
    /// How fast they accumulated: count over the span between the oldest and the newest, per
    /// minute (0 when they were opened together: a pool, not a leak in progress).
    pub growth_per_min: f64,
    /// The code that opened them (Go: with the Transports that dialed them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
}

/// A leak pattern named in a post-mortem.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pattern {
    /// `unreused_keepalive`, `close_wait_never_closed`, `accepted_piling_up`,
    /// `idle_pool`, `non_tcp_fds`.
    pub kind: String,
    pub count: u32,
    /// The remote they go to (or the local port of accepted ones); empty for `non_tcp_fds`.
    pub raddr: String,
    pub hint: String,
    /// Where they were opened (the origin's site), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// Go: the distinct http.Transports that dialed them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transports: Option<u32>,
}

/// Connections opened within this share of their age of each other were opened together.
const TOGETHER: f64 = 0.1;

/// A group opened at once (a warmed pool) rather than one by one over time.
pub fn opened_together(oldest_s: f64, newest_s: f64) -> bool {
    let spread = oldest_s - newest_s;
    spread <= 0.05 || spread <= TOGETHER * oldest_s
}

/// Growth per minute of a group from its ages: `count - 1` openings over the spread.
pub fn growth_from_ages(count: u32, oldest_s: f64, newest_s: f64) -> f64 {
    if count < 2 || opened_together(oldest_s, newest_s) {
        return 0.0;
    }
    let per_min = (count - 1) as f64 / (oldest_s - newest_s) * 60.0;
    (per_min * 10.0).round() / 10.0
}

pub const HINT_UNREUSED: &str =
    "each used for at most one exchange and kept open: a new connection pool (http.Transport, client) per request? reuse one client, or disable keep-alives";
pub const HINT_REUSE_UNKNOWN: &str =
    "open since before connlife attached, so whether they were reused is unknown: a count that keeps growing is the leak";
pub const HINT_IDLE_POOL: &str =
    "opened together and not growing: an idle connection pool kept for reuse, not a leak while it stays flat";
pub const HINT_CLOSE_WAIT: &str =
    "the peer closed and the process never closed its end: a response body never closed, or a socket not closed after EOF";
pub const HINT_ACCEPTED: &str =
    "accepted connections piling up: handlers that never return or never close, or clients that keep them idle";
pub const HINT_NON_TCP: &str = "most open fds were not TCP connections: files, pipes or other sockets";

/// Name the patterns in what was held at the end. `open_fds`/`tcp` are the last fd reading,
/// `limit` the fd limit; `group_min` the smallest group worth naming as a leak.
pub fn patterns(
    open: &[OpenGroup],
    open_fds: Option<u32>,
    tcp: u32,
    limit: Option<u64>,
    group_min: u32,
) -> Vec<Pattern> {
    let mut out = Vec::new();
    for g in open {
        let pattern = |kind: &str, hint: &str| Pattern {
            kind: kind.to_string(),
            count: g.count,
            raddr: g.raddr.clone(),
            hint: hint.to_string(),
            origin: g.origin.as_ref().map(|o| o.site.clone()),
            transports: g.origin.as_ref().and_then(|o| o.transports),
        };
        match (g.state, g.role) {
            (TcpState::CloseWait, Role::Server) if g.fds.is_empty() => {}
            (TcpState::CloseWait, _) => out.push(pattern("close_wait_never_closed", HINT_CLOSE_WAIT)),
            (TcpState::Established, Role::Server) if g.count >= group_min && g.growth_per_min > 0.0 => {
                out.push(pattern("accepted_piling_up", HINT_ACCEPTED))
            }
            (TcpState::Established, Role::Client | Role::Unknown) if g.count >= group_min => {
                // Unreused: most of those whose exchanges were counted carried at most one.
                // Where none was counted (all predate connlife), reuse is unknown: say so.
                if g.counted == 0 {
                    out.push(pattern("reuse_unknown", HINT_REUSE_UNKNOWN));
                    continue;
                }
                if g.unreused * 2 <= g.counted {
                    continue;
                }
                if opened_together(g.oldest_s, g.newest_s) {
                    out.push(pattern("idle_pool", HINT_IDLE_POOL));
                } else if g
                    .origin
                    .as_ref()
                    .is_some_and(|o| transport_per_request(o, g.count as usize))
                {
                    out.push(pattern("unreused_keepalive", HINT_TRANSPORT_PER_REQUEST));
                } else {
                    out.push(pattern("unreused_keepalive", HINT_UNREUSED));
                }
            }
            _ => {}
        }
    }
    if let (Some(open_fds), Some(limit)) = (open_fds, limit) {
        let near_limit = open_fds as u64 * 10 >= limit * 9;
        if near_limit && tcp * 2 < open_fds {
            out.push(Pattern {
                kind: "non_tcp_fds".into(),
                count: open_fds - tcp,
                raddr: String::new(),
                hint: HINT_NON_TCP.into(),
                origin: None,
                transports: None,
            });
        }
    }
    out
}

/// One sentence: how it ran out (if it did) and every leak pattern with its hint.
pub fn verdict(patterns: &[Pattern], exhausted: Option<(&str, f64)>, near_limit: Option<(u32, u64)>) -> String {
    let mut parts = Vec::new();
    if let Some((errno, at_s)) = exhausted {
        parts.push(format!("ran out of file descriptors ({errno} at {at_s:.1}s)"));
    } else if let Some((peak, limit)) = near_limit {
        parts.push(format!("came within 10% of its fd limit ({peak}/{limit})"));
    }
    for p in patterns.iter().filter(|p| p.kind != "idle_pool") {
        let what = match p.kind.as_str() {
            "unreused_keepalive" => format!("{} ESTABLISHED connections to {}", p.count, p.raddr),
            "reuse_unknown" => format!("{} ESTABLISHED connections to {}", p.count, p.raddr),
            "close_wait_never_closed" => format!("{} connections to {} stuck in CLOSE_WAIT", p.count, p.raddr),
            "accepted_piling_up" => format!("{} accepted connections from {} still open", p.count, p.raddr),
            _ => format!("{} fds", p.count),
        };
        let from = match (&p.origin, p.transports) {
            (Some(site), Some(1)) => format!(" opened from {site} (one http.Transport)"),
            (Some(site), Some(t)) => format!(" opened from {site} ({t} http.Transports)"),
            (Some(site), None) => format!(" opened from {site}"),
            _ => String::new(),
        };
        parts.push(format!("{what}{from}: {}", p.hint));
    }
    if parts.is_empty() {
        let pools: Vec<&Pattern> = patterns.iter().filter(|p| p.kind == "idle_pool").collect();
        return match pools.first() {
            Some(p) => format!(
                "no connection leak found ({} idle pooled connections to {}: {})",
                p.count, p.raddr, p.hint
            ),
            None => "no connection leak found".to_string(),
        };
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(state: TcpState, role: Role, count: u32, oldest: f64, newest: f64, unreused: u32) -> OpenGroup {
        OpenGroup {
            state,
            role,
            raddr: "10.0.0.1:80".into(),
            count,
            oldest_s: oldest,
            newest_s: newest,
            fds: (3..3 + count as i32).collect(),
            exchanges_per_conn: Some(1.0),
            unreused,
            counted: count,
            growth_per_min: growth_from_ages(count, oldest, newest),
            origin: None,
        }
    }

    /// The seed client died 1.2 s after its first request, holding 57 connections each used
    /// once: the verdict names the pattern although no idle threshold had passed.
    #[test]
    fn fast_death_names_unreused_keepalive_from_the_facts() {
        let g = group(TcpState::Established, Role::Client, 57, 1.2, 0.0, 57);
        let p = patterns(&[g], Some(64), 57, Some(64), 3);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].kind, "unreused_keepalive");
        let v = verdict(&p, Some(("EMFILE", 1.2)), None);
        assert!(
            v.starts_with("ran out of file descriptors (EMFILE at 1.2s); 57 ESTABLISHED connections to 10.0.0.1:80"),
            "{v}"
        );
        assert!(v.contains("reuse one client"), "{v}");
    }

    /// requests' HTTPAdapter(pool_maxsize=5) warmed by 5 concurrent GETs, then idle.
    #[test]
    fn a_warmed_pool_is_an_idle_pool_not_a_pool_per_request() {
        let g = group(TcpState::Established, Role::Client, 5, 300.0, 299.8, 5);
        assert_eq!(g.growth_per_min, 0.0);
        let p = patterns(&[g], Some(9), 5, Some(1024), 3);
        assert_eq!(p[0].kind, "idle_pool");
        let v = verdict(&p, None, None);
        assert!(v.starts_with("no connection leak found"), "{v}");
        assert!(!v.contains("per request"), "{v}");
    }

    #[test]
    fn close_wait_accepted_and_non_tcp() {
        let cw = group(TcpState::CloseWait, Role::Client, 4, 30.0, 10.0, 4);
        let acc = group(TcpState::Established, Role::Server, 40, 100.0, 1.0, 0);
        let p = patterns(&[cw, acc], Some(1000), 44, Some(1024), 3);
        let kinds: Vec<&str> = p.iter().map(|p| p.kind.as_str()).collect();
        assert_eq!(kinds, ["close_wait_never_closed", "accepted_piling_up", "non_tcp_fds"]);
        assert_eq!(p[2].count, 956);
    }

    /// Attached to a sick process: 1,300 connections from before (reuse unknown) and 17 new
    /// ones each used once: the leak is named from the counted ones.
    #[test]
    fn preexisting_connections_do_not_hide_the_leak() {
        let mut g = group(TcpState::Established, Role::Client, 1317, 900.0, 1.0, 17);
        g.counted = 17;
        let p = patterns(&[g], None, 1317, None, 3);
        assert_eq!(p[0].kind, "unreused_keepalive");
        let mut old = group(TcpState::Established, Role::Client, 1300, 30.0, 30.0, 0);
        old.counted = 0;
        old.exchanges_per_conn = None;
        let p = patterns(&[old], None, 1300, None, 3);
        assert_eq!(p[0].kind, "reuse_unknown");
        assert!(verdict(&p, None, None).contains("whether they were reused is unknown"));
    }

    #[test]
    fn reused_connections_are_no_pattern() {
        let mut g = group(TcpState::Established, Role::Client, 10, 100.0, 1.0, 1);
        g.exchanges_per_conn = Some(30.0);
        assert!(patterns(&[g], None, 10, None, 3).is_empty());
    }
}
