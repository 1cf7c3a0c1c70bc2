//! TEMPORARY STUB (the real module is being written)
use std::net::SocketAddr;
#[derive(Debug, Clone, PartialEq)]
pub struct SocketOwner { pub tgid: u32, pub fd: i32, pub comm: String }
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotSocket { pub netns: u32, pub inode: u64, pub cookie: u64, pub state: u8, pub local: SocketAddr, pub remote: SocketAddr, pub owners: Vec<SocketOwner>, pub bytes_sent: Option<u64>, pub bytes_received: Option<u64>, pub last_send_ago_ms: Option<u32>, pub last_recv_ago_ms: Option<u32> }
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessFds { pub tgid: u32, pub comm: String, pub netns: u32, pub open_fds: u32, pub fd_limit: Option<u64>, pub socket_inodes: Vec<(i32, u64)> }
pub fn take(_pids: Option<&[u32]>) -> anyhow::Result<Vec<SnapshotSocket>> { Ok(vec![]) }
pub fn process_fds(tgid: u32) -> anyhow::Result<ProcessFds> { let n = std::fs::read_dir(format!("/proc/{tgid}/fd"))?.count() as u32; Ok(ProcessFds { tgid, comm: String::new(), netns: 0, open_fds: n, fd_limit: Some(1024), socket_inodes: vec![] }) }
