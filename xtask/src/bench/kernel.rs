//! What a tracer's eBPF programs cost in the kernel: their `run_time_ns` and `run_cnt`, which the
//! kernel keeps while `kernel.bpf_stats_enabled` is 1 (it then times every BPF program run, which
//! adds a little to each). A tracer's programs are the ones it holds a program or link fd of
//! (`prog_id` in /proc/PID/fdinfo: Debian's bpftool shows no `pids`); their counters come from
//! `bpftool prog show --json`.

use anyhow::{Context, Result};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::process::Command;

const SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// `kernel.bpf_stats_enabled=1` while it lives; the previous value back on drop (errors too).
pub struct BpfStats {
    previous: String,
}

impl BpfStats {
    pub fn enable() -> Result<BpfStats> {
        let previous = fs::read_to_string(SYSCTL).with_context(|| format!("reading {SYSCTL}"))?;
        fs::write(SYSCTL, "1").with_context(|| format!("writing 1 to {SYSCTL}"))?;
        Ok(BpfStats { previous })
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        if let Err(e) = fs::write(SYSCTL, self.previous.trim()) {
            eprintln!("restoring {SYSCTL} to {}: {e}", self.previous.trim());
        }
    }
}

/// One program's counters as bpftool shows them (0 where stats were off).
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Prog {
    pub id: u32,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub run_time_ns: u64,
    #[serde(default)]
    pub run_cnt: u64,
}

/// `bpftool prog show --json`.
pub fn parse_bpftool(json: &str) -> Result<Vec<Prog>> {
    serde_json::from_str(json).context("parsing `bpftool prog show --json`")
}

/// The ids of the programs process `pid` holds a program or link fd of.
fn prog_ids(pid: u32) -> BTreeSet<u32> {
    let fds = fs::read_dir(format!("/proc/{pid}/fd")).into_iter().flatten().flatten();
    let bpf = fds.filter(|fd| {
        let target = fs::read_link(fd.path()).unwrap_or_default();
        let target = target.to_string_lossy();
        target.contains("bpf-prog") || target.contains("bpf_link")
    });
    let infos = bpf
        .filter_map(|fd| fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", fd.file_name().to_string_lossy())).ok());
    infos.flat_map(|info| prog_id(&info)).collect()
}

/// The `prog_id:` of an fdinfo text.
fn prog_id(fdinfo: &str) -> Option<u32> {
    let line = fdinfo.lines().find_map(|l| l.strip_prefix("prog_id:"))?;
    line.trim().parse().ok()
}

/// The counters of the programs process `pid` holds, by id.
pub fn read(pid: u32) -> Result<BTreeMap<u32, Prog>> {
    let ids = prog_ids(pid);
    let out = Command::new("bpftool").args(["prog", "show", "--json"]).output();
    let out = out.context("running bpftool (`cargo xtask setup` installs it)")?;
    anyhow::ensure!(
        out.status.success(),
        "bpftool prog show: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let progs = parse_bpftool(&String::from_utf8_lossy(&out.stdout))?;
    Ok(progs
        .into_iter()
        .filter(|p| ids.contains(&p.id))
        .map(|p| (p.id, p))
        .collect())
}

/// Runs and run time of the programs of one name between two reads.
#[derive(Clone, Debug, PartialEq)]
pub struct Spent {
    pub name: String,
    pub runs: u64,
    pub ns: u64,
}

/// What a tracer's programs did between two reads, summed by program name (one name can be
/// several programs, such as a uprobe per binary), names sorted.
pub fn spent(before: &BTreeMap<u32, Prog>, after: &BTreeMap<u32, Prog>) -> Vec<Spent> {
    let mut by_name = BTreeMap::<String, (u64, u64)>::new();
    for p in after.values() {
        let (runs0, ns0) = before.get(&p.id).map_or((0, 0), |b| (b.run_cnt, b.run_time_ns));
        let e = by_name.entry(p.name.clone()).or_default();
        e.0 += p.run_cnt.saturating_sub(runs0);
        e.1 += p.run_time_ns.saturating_sub(ns0);
    }
    let spent = by_name.into_iter().map(|(name, (runs, ns))| Spent { name, runs, ns });
    spent.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `bpftool prog show --json` (bpftool v7.1.0, Linux 6.18) with bpf_stats on and `connlife
    /// floor` running, and a program loaded while stats were off (no counters).
    const SAMPLE: &str = concat!(
        r#"[{"id":9682,"type":"tracepoint","name":"floor_count","tag":"c06ce23c55380c3b","gpl_compatible":true,"#,
        r#""run_time_ns":701,"run_cnt":2,"loaded_at":1796036696,"uid":0,"bytes_xlated":168,"jited":true,"#,
        r#""bytes_jited":106,"bytes_memlock":4096,"map_ids":[7535],"btf_id":5008},"#,
        r#"{"id":9360,"type":"raw_tracepoint","name":"sched_process_fork","tag":"461c919c90bef983","#,
        r#""gpl_compatible":true,"loaded_at":1796036039,"uid":0,"bytes_xlated":2648,"jited":true,"#,
        r#""bytes_jited":1578,"bytes_memlock":4096,"map_ids":[7258,7248,7247,7249],"btf_id":4864}]"#
    );

    #[test]
    fn parses_bpftool_json() {
        let progs = parse_bpftool(SAMPLE).unwrap();
        let prog = |id, name: &str, run_time_ns, run_cnt| Prog {
            id,
            name: name.into(),
            run_time_ns,
            run_cnt,
        };
        assert_eq!(
            progs,
            [
                prog(9682, "floor_count", 701, 2),
                prog(9360, "sched_process_fork", 0, 0)
            ]
        );
        assert_eq!(parse_bpftool("[]").unwrap(), []);
        assert!(parse_bpftool("Error: no bpftool").is_err());
    }

    #[test]
    fn reads_prog_id_from_fdinfo() {
        let link = "pos:\t0\nflags:\t02000002\nmnt_id:\t16\nino:\t1057\nlink_type:\tperf\nlink_id:\t7323\nprog_tag:\t29f1b1e4e1a1a9b8\nprog_id:\t9667\n";
        assert_eq!(prog_id(link), Some(9667));
        assert_eq!(prog_id("pos:\t0\nmap_type:\t2\n"), None);
    }

    #[test]
    fn sums_what_was_spent_by_name() {
        let p = |id, name: &str, run_time_ns, run_cnt| {
            let name = name.into();
            (
                id,
                Prog {
                    id,
                    name,
                    run_time_ns,
                    run_cnt,
                },
            )
        };
        let before = BTreeMap::from([p(1, "a", 100, 1), p(2, "u", 10, 1)]);
        let after = BTreeMap::from([p(1, "a", 400, 4), p(2, "u", 30, 2), p(3, "u", 50, 5)]);
        let s = |name: &str, runs, ns| Spent {
            name: name.into(),
            runs,
            ns,
        };
        assert_eq!(spent(&before, &after), [s("a", 3, 300), s("u", 6, 70)]);
    }
}
