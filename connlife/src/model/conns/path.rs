//! A connection's states with the time each was entered, 8 bytes a step: the state in the top
//! 4 bits, the time (ns since boot, good for 36 years of uptime) in the other 60. Two steps
//! inline (SYN_SENT or SYN_RECV, then ESTABLISHED), more spill to the heap. Read and written
//! as `(TcpState, u64)` pairs, in memory and in JSON alike.
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use smallvec::SmallVec;

use crate::kernel::event::TcpState;

const TIME_BITS: u32 = 60;
const TIME_MASK: u64 = (1 << TIME_BITS) - 1;
/// Steps a path has room for once it leaves its inline two: a client's whole life is 5
/// (SYN_SENT, ESTABLISHED, FIN_WAIT1, FIN_WAIT2, CLOSE), a server's 5 or 6.
const ENDING_STEPS: usize = 4;

#[derive(Clone, Default, PartialEq, Eq)]
pub struct StatePath(SmallVec<[u64; 2]>);

fn pack((state, ts): (TcpState, u64)) -> u64 {
    (state as u64) << TIME_BITS | ts.min(TIME_MASK)
}

fn unpack(step: u64) -> (TcpState, u64) {
    // Only `pack` writes steps, from a valid state.
    let state = TcpState::try_from((step >> TIME_BITS) as u8).unwrap_or(TcpState::Close);
    (state, step & TIME_MASK)
}

impl StatePath {
    pub fn starting(state: TcpState, ts: u64) -> StatePath {
        let mut path = StatePath::default();
        path.push((state, ts));
        path
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn push(&mut self, step: (TcpState, u64)) {
        // Past the two inline steps, room for a whole ending at once (FIN_WAIT1, FIN_WAIT2,
        // CLOSE...): one allocation for a connection's path, not one per doubling.
        if self.0.len() == 2 {
            self.0.reserve_exact(ENDING_STEPS);
        }
        self.0.push(pack(step));
    }
    pub fn insert(&mut self, at: usize, step: (TcpState, u64)) {
        self.0.insert(at, pack(step));
    }
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (TcpState, u64)> + ExactSizeIterator + '_ {
        self.0.iter().map(|&s| unpack(s))
    }
}

impl std::fmt::Debug for StatePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Serialize for StatePath {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for StatePath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<StatePath, D::Error> {
        let steps = Vec::<(TcpState, u64)>::deserialize(d)?;
        let mut path = StatePath::default();
        for step in steps {
            path.push(step);
        }
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_read_back_as_written_in_memory_and_json() {
        let mut path = StatePath::starting(TcpState::SynSent, 5);
        path.push((TcpState::Established, 1 << 59));
        path.insert(1, (TcpState::Close, TIME_MASK + 7)); // saturates, never wraps
        let want = [
            (TcpState::SynSent, 5),
            (TcpState::Close, TIME_MASK),
            (TcpState::Established, 1 << 59),
        ];
        assert_eq!(path.iter().collect::<Vec<_>>(), want);
        let json = serde_json::to_string(&path).unwrap();
        assert_eq!(json, serde_json::to_string(&want).unwrap());
        assert_eq!(serde_json::from_str::<StatePath>(&json).unwrap(), path);
        assert_eq!(std::mem::size_of::<StatePath>(), 24);
    }
}
