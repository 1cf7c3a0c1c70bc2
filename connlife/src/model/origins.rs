//! Where connections came from (pure): the symbolized stacks the session was given, by process
//! and stack id, and the resolution of a connection's birth into the [`Origin`] that findings,
//! groups and post-mortems show. For Go's net/http that is the request that made the Transport
//! dial (the dial itself runs on a goroutine of the Transport's, whose stack names no user
//! code); otherwise the stack at connect() or accept().
use std::{collections::BTreeMap, sync::Arc};

use rustc_hash::FxHashMap as HashMap;
use serde::{Deserialize, Serialize};

use crate::{
    kernel::event::{BirthOrigin, Role},
    model::origin::{call_site, describe_chain, Frame},
};

/// Which stack an [`Origin`] comes from.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OriginSource {
    /// Go net/http: the goroutine that made the request, at `(*Transport).roundTrip`.
    GoRequest,
    /// The stack at connect().
    Connect,
    /// The stack at accept().
    Accept,
}

/// The code that opened a connection, as shown.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Origin {
    pub source: OriginSource,
    /// The first frames of the user's own code, innermost first, as printed
    /// (`main.DoRequest (client.go:23) <- main.poll (main.go:80)`); a stack with no frame of the
    /// user's is no origin.
    pub site: String,
    /// The whole stack, innermost first.
    pub frames: Vec<Frame>,
    /// Go: how many distinct http.Transports made the connections counted with this origin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transports: Option<u32>,
}

/// User frames in a site.
const SITE_FRAMES: usize = 2;
/// Symbolized stacks kept at most (the kernel's stack map holds 16,384 ids; per process
/// they repeat).
pub const MAX_STACKS: usize = 65_536;

/// Symbolized stacks by (pid, stack id): a stack id names addresses in one process's memory.
#[derive(Default)]
pub struct Stacks {
    by_id: HashMap<(u32, u32), Arc<[Frame]>>,
}

impl Stacks {
    pub fn insert(&mut self, pid: u32, stack_id: u32, frames: &[Frame]) {
        if self.by_id.len() >= MAX_STACKS && !self.by_id.contains_key(&(pid, stack_id)) {
            return;
        }
        self.by_id.insert((pid, stack_id), frames.into());
    }
    pub fn get(&self, pid: u32, stack_id: u32) -> Option<&[Frame]> {
        self.by_id.get(&(pid, stack_id)).map(|f| &f[..])
    }
    pub fn len(&self) -> usize {
        self.by_id.len()
    }
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
    /// Drop the stacks of processes `keep` no longer wants (gone and reported on).
    pub fn retain_pids(&mut self, keep: impl Fn(u32) -> bool) {
        self.by_id.retain(|(pid, _), _| keep(*pid));
    }

    /// The origin of a connection born in `pid` with `birth`; `None` while its stacks are not
    /// symbolized yet, or when none was taken.
    ///
    /// The Go request's stack is used only when the stack at connect() is unknown or passes
    /// through net/http: the kernel joins them by goroutine and fd, and this check makes a
    /// stale join (a goroutine reused after a dial that never connected) say nothing rather
    /// than name the wrong code.
    pub fn resolve(&self, pid: u32, role: Role, birth: &BirthOrigin) -> Option<Origin> {
        let native = birth.stack.and_then(|id| self.get(pid, id));
        let request = birth.request_stack.and_then(|id| self.get(pid, id));
        if let Some(request) = request.filter(|r| call_site(r).is_some()) {
            let dialed_by_net_http = native.is_none_or(|n| {
                n.iter()
                    .any(|f| f.function.as_deref().is_some_and(|name| name.starts_with("net/http.")))
            });
            if dialed_by_net_http {
                return Some(origin(OriginSource::GoRequest, request));
            }
        }
        let source = if role == Role::Server {
            OriginSource::Accept
        } else {
            OriginSource::Connect
        };
        // A stack with no frame of the user's (a program built without frame pointers, whose
        // walk stops in libc; net/http's dial goroutine without its request) names nothing
        // worth showing: silent rather than "from __libc_connect".
        native.filter(|n| call_site(n).is_some()).map(|n| origin(source, n))
    }
}

/// An origin from a stack that has a frame of the user's (checked by the caller).
fn origin(source: OriginSource, frames: &[Frame]) -> Origin {
    let site = describe_chain(frames, SITE_FRAMES);
    Origin {
        source,
        site,
        frames: frames.to_vec(),
        transports: None,
    }
}

/// Among connections with origins (and, for Go, the Transport that dialed each), the most
/// common origin by site, how many share it, and its distinct Transports.
pub fn dominant<'a>(items: impl Iterator<Item = (&'a Origin, Option<u64>)>) -> Option<(Origin, usize)> {
    let mut by_site: BTreeMap<&str, (&Origin, usize, Vec<u64>)> = BTreeMap::new();
    for (o, transport) in items {
        let e = by_site.entry(o.site.as_str()).or_insert((o, 0, Vec::new()));
        e.1 += 1;
        e.2.extend(transport);
    }
    let (_, (o, count, mut transports)) = by_site.into_iter().max_by_key(|(_, (_, n, _))| *n)?;
    let mut o = o.clone();
    if o.source == OriginSource::GoRequest {
        transports.sort_unstable();
        transports.dedup();
        o.transports = Some(transports.len() as u32);
    }
    Some((o, count))
}

/// The diagnosis of Go's most common leak: as many Transports as connections from one call
/// site means a new Transport (and pool) per request.
pub fn transport_per_request(o: &Origin, connections: usize) -> bool {
    o.source == OriginSource::GoRequest && connections >= 2 && o.transports == Some(connections as u32)
}

pub const HINT_TRANSPORT_PER_REQUEST: &str =
    "one http.Transport made per request at this call site: reuse one client (or Transport), or set DisableKeepAlives";

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(function: &str) -> Frame {
        Frame {
            addr: 0x1000,
            function: Some(function.to_string()),
            file: Some(format!("/src/{}.go", function.replace(['.', '/', '(', ')', '*'], "_"))),
            line: Some(10),
            module: Some("/bin/client".to_string()),
            offset: None,
        }
    }

    fn stacks() -> Stacks {
        let mut s = Stacks::default();
        // The stack at connect() on net/http's dial goroutine.
        s.insert(
            7,
            1,
            &[
                frame("syscall.connect"),
                frame("net.(*netFD).connect"),
                frame("net/http.(*Transport).dialConn"),
                frame("net/http.(*Transport).dialConnFor"),
                frame("runtime.goexit"),
            ],
        );
        // The request goroutine at roundTrip.
        s.insert(
            7,
            2,
            &[
                frame("net/http.(*Transport).roundTrip"),
                frame("net/http.(*Client).do"),
                frame("main.leakyPost"),
                frame("main.main"),
            ],
        );
        // A user's own dial on its own goroutine.
        s.insert(
            7,
            3,
            &[frame("syscall.connect"), frame("main.dialDB"), frame("main.main")],
        );
        s
    }

    fn birth(stack: Option<u32>, request_stack: Option<u32>, transport: Option<u64>) -> BirthOrigin {
        BirthOrigin {
            stack,
            request_stack,
            transport,
        }
    }

    #[test]
    fn a_go_dial_is_named_by_the_request_that_caused_it() {
        let o = stacks()
            .resolve(7, Role::Client, &birth(Some(1), Some(2), Some(0xc000)))
            .unwrap();
        assert_eq!(o.source, OriginSource::GoRequest);
        assert!(o.site.starts_with("main.leakyPost"), "{}", o.site);
        assert!(o.site.contains("main.main"), "{}", o.site);
    }

    #[test]
    fn a_request_stack_is_not_trusted_for_a_connect_outside_net_http() {
        // A goroutine reused after a dial that never connected: its stale request must not
        // name the code of a user's own dial.
        let o = stacks()
            .resolve(7, Role::Client, &birth(Some(3), Some(2), Some(0xc000)))
            .unwrap();
        assert_eq!(o.source, OriginSource::Connect);
        assert!(o.site.starts_with("main.dialDB"), "{}", o.site);
    }

    #[test]
    fn unknown_until_symbolized_and_per_process() {
        let s = stacks();
        assert_eq!(
            s.resolve(8, Role::Client, &birth(Some(1), None, None)),
            None,
            "another pid"
        );
        assert_eq!(s.resolve(7, Role::Client, &birth(Some(99), None, None)), None);
        let accepted = s.resolve(7, Role::Server, &birth(Some(3), None, None)).unwrap();
        assert_eq!(accepted.source, OriginSource::Accept);
    }

    #[test]
    fn a_stack_with_no_user_frame_is_no_origin() {
        // net/http's dial goroutine without its request, or a walk that stopped in libc.
        assert_eq!(stacks().resolve(7, Role::Client, &birth(Some(1), None, None)), None);
    }

    #[test]
    fn dominant_counts_transports_of_the_most_common_site() {
        let s = stacks();
        let go = s.resolve(7, Role::Client, &birth(Some(1), Some(2), Some(1))).unwrap();
        let own = s.resolve(7, Role::Client, &birth(Some(3), None, None)).unwrap();
        let items = vec![(&go, Some(1)), (&go, Some(2)), (&go, Some(3)), (&own, None)];
        let (o, n) = dominant(items.into_iter()).unwrap();
        assert_eq!(n, 3);
        assert_eq!(o.transports, Some(3));
        assert!(transport_per_request(&o, n));
        let shared = vec![(&go, Some(1)), (&go, Some(1)), (&go, Some(1))];
        let (o, n) = dominant(shared.into_iter()).unwrap();
        assert_eq!(o.transports, Some(1));
        assert!(!transport_per_request(&o, n), "one shared Transport");
        assert!(dominant(std::iter::empty()).is_none());
    }
}
