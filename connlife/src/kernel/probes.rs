//! Kernel differences in one place: which tracepoint feeds which event, which of them this
//! kernel has, and the offsets the programs need (tracepoint fields from tracefs `format` files,
//! kernel struct members from /sys/kernel/btf/vmlinux, `sock_close` from /proc/kallsyms).
//!
//! | program | needs | without it |
//! |---|---|---|
//! | inet_sock_set_state (raw tracepoint) | 4.16 | connlife cannot run |
//! | sched_process_fork (raw tracepoint) | always | a forked child's sockets stay on the parent until reconciled |
//! | sys_enter_close, sys_enter_connect, sys_exit_accept(4) | syscall tracepoints | cannot run (sys_enter_connect is attached only where the user registers are not known: `connect_from_regs`) |
//! | `pt_regs` in BTF (x86-64) | always | no origins' user stacks; a connect's fd from sys_enter_connect |
//! | sys_enter_dup2, sys_enter_dup3 | syscall tracepoints | a socket fd replaced by dup2 is not seen closed |
//! | sock_send_length / sock_recv_length (raw tracepoints, `TP_PROTO` checked in BTF) | 6.3 | bytes and last activity from sock_diag tcp_info; exchanges unknown |
//! | sched_process_exit `group_dead` field | 6.16 | last thread = group leader (pid == tgid) |
//! | sys_exit_socket, sys_exit_openat | syscall tracepoints | EMFILE moment not reported |
use std::{fs, path::Path};

use anyhow::{anyhow, bail, Context as _};
use connlife_common::{Config, OFFSET_ABSENT, REGS_BYTES, SYSCALL_ARG0_AT, SYSCALL_ARG1_AT, SYSCALL_RET_AT};
use serde::Serialize;

use crate::kernel::{
    btf::{ArgType, Btf},
    tracefs,
};

/// The programs that count a socket's bytes and exchanges: both or neither.
const USAGE_PROGRAMS: [&str; 2] = ["sock_send_length", "sock_recv_length"];

/// What this kernel offers, as discovered at start; printed by `connlife check`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Features {
    pub kernel: String,
    pub btf: bool,
    /// Program name -> attachable (its tracepoint exists).
    pub tracepoints: Vec<(String, bool)>,
    /// Bytes, last activity and exchanges counted in the kernel (sock_{send,recv}_length).
    pub use_counting: bool,
    /// sched_process_exit has `group_dead`.
    pub exit_group_dead: bool,
}

impl Features {
    pub fn has(&self, program: &str) -> bool {
        self.tracepoints.iter().any(|(p, ok)| p == program && *ok)
    }
}

/// Programs connlife cannot run without.
pub const REQUIRED: &[&str] = &[
    "inet_sock_set_state",
    "sched_process_fork",
    "sys_enter_connect",
    "sys_enter_close",
    "sys_exit_accept4",
    "sched_process_exit",
];

/// Discover features and build the [`Config`] for the programs.
pub fn discover(tracefs_root: &Path) -> anyhow::Result<(Config, Features)> {
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let mut cfg = Config::default();
    let mut tracepoints = Vec::new();
    let mut formats = std::collections::HashMap::new();
    for (program, _, category, name) in connlife_common::PROGRAMS {
        let format = tracefs::read_format(tracefs_root, category, name)?;
        tracepoints.push((program.to_string(), format.is_some()));
        if let Some(f) = format {
            formats.insert(*program, f);
        }
    }
    for required in REQUIRED {
        if !formats.contains_key(required) {
            let (_, _, cat, name) = connlife_common::PROGRAMS
                .iter()
                .find(|(p, ..)| p == required)
                .ok_or_else(|| anyhow!("{required} is not a program"))?;
            bail!("tracepoint {cat}/{name} is missing on kernel {kernel}: connlife needs it");
        }
    }
    let off = |program: &str, field: &str| -> anyhow::Result<u32> {
        formats
            .get(program)
            .and_then(|f| f.offset(field))
            .ok_or_else(|| anyhow!("tracepoint {program} has no field `{field}` on this kernel"))
    };
    // The programs read these at constant offsets: a kernel that moved one is not supported.
    let at = |program: &str, field: &str, expected: u32| -> anyhow::Result<()> {
        if !formats.contains_key(program) {
            return Ok(());
        }
        let found = off(program, field)?;
        if found != expected {
            bail!("tracepoint {program}: `{field}` at offset {found}, connlife reads it at {expected}; unsupported kernel");
        }
        Ok(())
    };
    at("sys_enter_close", "fd", SYSCALL_ARG0_AT)?;
    at("sys_enter_connect", "fd", SYSCALL_ARG0_AT)?;
    at("sys_enter_dup2", "newfd", SYSCALL_ARG1_AT)?;
    at("sys_enter_dup3", "newfd", SYSCALL_ARG1_AT)?;
    for exit in [
        "sys_exit_accept4",
        "sys_exit_accept",
        "sys_exit_socket",
        "sys_exit_openat",
    ] {
        at(exit, "ret", SYSCALL_RET_AT)?;
    }
    cfg.exit_pid = off("sched_process_exit", "pid")?;
    cfg.exit_group_dead = off("sched_process_exit", "group_dead").unwrap_or(OFFSET_ABSENT);
    let btf_bytes = fs::read("/sys/kernel/btf/vmlinux")
        .context("reading /sys/kernel/btf/vmlinux (kernel BTF, CONFIG_DEBUG_INFO_BTF) failed: connlife needs it")?;
    let btf = Btf::parse(&btf_bytes).context("parsing kernel BTF")?;
    fill_struct_offsets(&mut cfg, &btf)?;
    // The usage programs are raw tracepoints reading `TP_PROTO(struct sock *sk, int ret, int
    // flags)` (6.3+) straight from their arguments; a kernel whose prototype differs keeps
    // them off, like one without the tracepoints.
    let usage_args = [ArgType::Pointer("sock".into()), ArgType::Int(4), ArgType::Int(4)];
    let mut use_counting = true;
    for program in USAGE_PROGRAMS {
        let fits = formats.contains_key(program) && btf.raw_tracepoint_args(program).is_ok_and(|a| a == usage_args);
        use_counting &= fits;
    }
    if !use_counting {
        for (program, attachable) in tracepoints.iter_mut() {
            if USAGE_PROGRAMS.contains(&program.as_str()) {
                *attachable = false;
            }
        }
    }
    cfg.sock_close_addr = kallsyms_address("sock_close")?;

    let features = Features {
        kernel,
        btf: true,
        tracepoints,
        use_counting,
        exit_group_dead: cfg.exit_group_dead != OFFSET_ABSENT,
    };
    Ok((cfg, features))
}

fn fill_struct_offsets(cfg: &mut Config, btf: &Btf) -> anyhow::Result<()> {
    let m = |ty: &str, path: &[&str]| {
        btf.member_offset(ty, path)
            .with_context(|| format!("kernel BTF: {ty}.{}", path.join(".")))
    };
    cfg.task_pid = m("task_struct", &["pid"])?;
    cfg.task_tgid = m("task_struct", &["tgid"])?;
    cfg.task_files = m("task_struct", &["files"])?;
    cfg.task_exit_code = m("task_struct", &["exit_code"])?;
    cfg.files_fdt = m("files_struct", &["fdt"])?;
    cfg.fdt_fd = m("fdtable", &["fd"])?;
    cfg.fdt_max_fds = m("fdtable", &["max_fds"])?;
    cfg.file_f_op = m("file", &["f_op"])?;
    cfg.file_private_data = m("file", &["private_data"])?;
    cfg.fop_release = m("file_operations", &["release"])?;
    cfg.socket_sk = m("socket", &["sk"])?;
    cfg.socket_type = m("socket", &["type"])?;
    cfg.skc_daddr = m("sock_common", &["skc_daddr"])?;
    cfg.skc_rcv_saddr = m("sock_common", &["skc_rcv_saddr"])?;
    cfg.skc_dport = m("sock_common", &["skc_dport"])?;
    cfg.skc_num = m("sock_common", &["skc_num"])?;
    cfg.skc_family = m("sock_common", &["skc_family"])?;
    cfg.skc_state = m("sock_common", &["skc_state"])?;
    cfg.skc_v6_daddr = m("sock_common", &["skc_v6_daddr"])?;
    cfg.skc_v6_rcv_saddr = m("sock_common", &["skc_v6_rcv_saddr"])?;
    cfg.skc_net = m("sock_common", &["skc_net"])?;
    cfg.skc_cookie = m("sock_common", &["skc_cookie"])?;
    cfg.net_ns_inum = m("net", &["ns", "inum"])?;
    cfg.sk_protocol = m("sock", &["sk_protocol"])?;
    // The file's reference count, to fold only the last close of a socket (6.13 made it a
    // `file_ref_t` that counts from 0 for one reference; before, `atomic_long_t f_count` from 1).
    // Neither: every close is sent as it happens.
    (cfg.file_count, cfg.file_count_one) = match (
        btf.member_offset("file", &["f_ref"]),
        btf.member_offset("file", &["f_count"]),
    ) {
        (Ok(at), _) => (at, 0),
        (_, Ok(at)) => (at, 1),
        _ => (OFFSET_ABSENT, 0),
    };
    fill_user_regs(cfg, btf);
    Ok(())
}

/// Where a program in a syscall finds the task's user registers, for the user stack walk of
/// origins: `task_struct.stack` and x86-64's `struct pt_regs`. Absent (another architecture, a
/// kernel without them in BTF): `regs_size` is OFFSET_ABSENT and births carry no stack.
fn fill_user_regs(cfg: &mut Config, btf: &Btf) {
    cfg.regs_size = OFFSET_ABSENT;
    if !cfg!(target_arch = "x86_64") {
        return;
    }
    let m = |ty: &str, name: &str| btf.member_offset(ty, &[name]).ok();
    let regs = |name| m("pt_regs", name);
    let (Some(task_stack), Ok(size), Some(ip), Some(sp), Some(bp), Some(cs), Some(ss), Some(orig_ax), Some(di)) = (
        m("task_struct", "stack"),
        btf.struct_size("pt_regs"),
        regs("ip"),
        regs("sp"),
        regs("bp"),
        regs("cs"),
        regs("ss"),
        regs("orig_ax"),
        regs("di"),
    ) else {
        return;
    };
    // The programs read the registers in one block of REGS_BYTES.
    if size != REGS_BYTES {
        log::info!("struct pt_regs is {size} bytes, not {REGS_BYTES}: no user registers, no user stacks");
        return;
    }
    (cfg.task_stack, cfg.regs_size) = (task_stack, size);
    (cfg.regs_ip, cfg.regs_sp, cfg.regs_bp, cfg.regs_cs, cfg.regs_ss) = (ip, sp, bp, cs, ss);
    (cfg.regs_orig_ax, cfg.regs_di) = (orig_ax, di);
}

/// Address of a kernel text symbol from /proc/kallsyms (root sees real addresses).
fn kallsyms_address(symbol: &str) -> anyhow::Result<u64> {
    let text = fs::read_to_string("/proc/kallsyms").context("reading /proc/kallsyms")?;
    let addr = parse_kallsyms(&text, symbol).ok_or_else(|| anyhow!("{symbol} not found in /proc/kallsyms"))?;
    if addr == 0 {
        bail!("/proc/kallsyms hides addresses (kptr_restrict): connlife needs CAP_SYSLOG");
    }
    Ok(addr)
}

/// Pure: find `symbol`'s address in kallsyms text.
pub fn parse_kallsyms(text: &str, symbol: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let mut parts = line.split_whitespace();
        let (addr, _kind, name) = (parts.next()?, parts.next()?, parts.next()?);
        (name == symbol).then(|| u64::from_str_radix(addr, 16).ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    /// A kernel without the state tracepoint: one clear error naming it, before anything loads.
    #[test]
    fn missing_required_tracepoint_is_one_clear_error() {
        let root = std::env::temp_dir().join(format!("connlife-fake-tracefs-{}", std::process::id()));
        let dir = root.join("events/syscalls/sys_enter_close");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("format"),
            "\tfield:unsigned int fd;\toffset:16;\tsize:8;\tsigned:0;\n",
        )
        .unwrap();
        let err = super::discover(&root).unwrap_err().to_string();
        assert!(
            err.starts_with("tracepoint sock/inet_sock_set_state is missing on kernel"),
            "{err}"
        );
        assert!(err.ends_with("connlife needs it"), "{err}");
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn kallsyms_exact_name_only() {
        let text = "ffffffff8123e9b0 t sock_close.cold\nffffffff81e7edd0 t sock_close\n";
        assert_eq!(super::parse_kallsyms(text, "sock_close"), Some(0xffffffff81e7edd0));
        assert_eq!(super::parse_kallsyms(text, "nope"), None);
    }
}
