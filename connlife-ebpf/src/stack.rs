//! A connection's user stack (its origin), walked here by its frame pointers rather than by
//! the kernel's `bpf_get_stackid`. The kernel's walk goes on until a read fails, and the chain
//! of a program built with frame pointers ends in a null pointer: every walk ended in a page
//! fault caught by the exception table. This walk stops where a frame pointer cannot be one
//! (null, below the stack pointer or the previous frame, misaligned, absurdly far), so a
//! register that is no frame pointer at all (a program built without them) is not followed
//! into garbage, and a stack is kept under 31 bits of its 64-bit hash, where the kernel's map
//! has 16,384 buckets in which two stacks collide (a birth without origin). It costs what the
//! kernel's did (one read per frame where the kernel had a fault per stack). The frames are the
//! same as the kernel's: the instruction pointer, then each frame's return address.
//!
//! In a syscall the user registers sit at the top of the task's kernel stack (`task_pt_regs`);
//! where exactly depends on the kernel's stack size and padding, so the candidates are tried
//! and the one whose code and stack segments are the user's is kept (per CPU) for the next.
use aya_ebpf::{
    cty::c_void,
    helpers::{bpf_get_current_task, bpf_probe_read_user, generated},
    macros::map,
    maps::PerCpuArray,
};
use connlife_common::*;

use crate::{
    helpers::{block_field, conf, count, kread},
    STACKS,
};

/// Per-CPU room to build a stack in (1 KiB: more than a BPF program's stack).
#[map]
static STACK_SCRATCH: PerCpuArray<UserStack> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU: where the user registers were last found, counted back from the start of the
/// task's kernel stack (THREAD_SIZE less the padding); 0 = not found yet.
#[map]
static REGS_TOP: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// x86-64 `__USER_CS` and `__USER_DS`.
const USER_CS: u16 = 0x33;
const USER_DS: u16 = 0x2b;
/// Where the registers may end: 16 or 32 KiB stacks (KASAN doubles it), with or without the 16
/// bytes FRED keeps above them.
const REGS_TOPS: [u64; 4] = [16 << 10, (16 << 10) - 16, 32 << 10, (32 << 10) - 16];
/// A frame pointer further than this above the previous one (or the first above the stack
/// pointer) is taken for garbage: thread stacks are 8 MiB by default.
const MAX_FRAME_SPAN: u64 = 8 << 20;

/// The user registers the running task saved when it entered its syscall: what the programs
/// need of them, from one read of the whole `pt_regs`. A plain struct with `found`, not an
/// Option: 5.10's and 6.1's verifiers reject copying an Option whose payload one path never
/// wrote ("invalid read from stack").
#[derive(Clone, Copy)]
pub struct SyscallRegs {
    /// False: not a user task in a syscall, or this kernel's registers are not known (every
    /// other field zero).
    pub found: bool,
    /// The syscall's number (`orig_ax`) and first argument (`di`).
    pub nr: u64,
    pub arg0: u64,
    ip: u64,
    sp: u64,
    bp: u64,
}

impl SyscallRegs {
    const NONE: SyscallRegs = SyscallRegs {
        found: false,
        nr: 0,
        arg0: 0,
        ip: 0,
        sp: 0,
        bp: 0,
    };
}

/// Per-CPU room for the registers read at once (168 bytes: more than a program's stack
/// should hold next to a record being built).
#[map]
static REGS_SCRATCH: PerCpuArray<[u64; REGS_WORDS]> = PerCpuArray::with_max_entries(1, 0);
const REGS_WORDS: usize = REGS_BYTES as usize / 8;

/// The user stack of the running task, which is in a syscall (connect, accept), from its
/// registers: its id in STACKS, or -1 (counted as `StackMissed`).
#[inline(always)]
pub fn syscall_user_stack(regs: &SyscallRegs) -> i32 {
    if regs.found {
        return walk_user_stack(regs.ip, regs.sp, regs.bp);
    }
    count(Counter::StackMissed);
    -1
}

/// The running task's user registers (its `task_pt_regs`), if it is a user task in a syscall
/// and this kernel's registers are known.
#[inline(always)]
pub fn syscall_regs() -> SyscallRegs {
    if conf!(regs_size) == OFFSET_ABSENT {
        return SyscallRegs::NONE;
    }
    // SAFETY: the running task's address, only read through bpf_probe_read_kernel.
    let task = unsafe { bpf_get_current_task() };
    let (Some(stack), Some(block), Some(cached)) = (
        kread::<u64>(task, conf!(task_stack)),
        REGS_SCRATCH.get_ptr_mut(0),
        REGS_TOP.get_ptr_mut(0),
    ) else {
        return SyscallRegs::NONE;
    };
    // SAFETY: this CPU's slots, one program at a time.
    let (block, top) = unsafe { (&mut *block, *cached) };
    if top != 0 {
        // Found before: a task whose registers are not there is no user task (a kernel
        // thread doing io_uring's connect), not a reason to read elsewhere.
        return users_registers(block, stack + top - REGS_BYTES as u64);
    }
    // Smallest first: a larger guess on a smaller stack would read past its end.
    for top in REGS_TOPS {
        let regs = users_registers(block, stack + top - REGS_BYTES as u64);
        if regs.found {
            // SAFETY: as above.
            unsafe { *cached = top };
            return regs;
        }
    }
    SyscallRegs::NONE
}

/// The registers at `at`, read into `block`, if they belong to user mode (both segments the
/// user's).
#[inline(always)]
fn users_registers(block: &mut [u64; REGS_WORDS], at: u64) -> SyscallRegs {
    // SAFETY: bpf_probe_read_kernel copies with fault handling into this CPU's map slot.
    let read =
        unsafe { generated::bpf_probe_read_kernel(block.as_mut_ptr() as *mut c_void, REGS_BYTES, at as *const c_void) };
    if read != 0 {
        count(Counter::ReadFailed);
        return SyscallRegs::NONE;
    }
    let field = |off, size| block_field(block, at, off, size).unwrap_or(0);
    if field(conf!(regs_cs), 2) != USER_CS as u64 || field(conf!(regs_ss), 2) != USER_DS as u64 {
        return SyscallRegs::NONE;
    }
    SyscallRegs {
        found: true,
        nr: field(conf!(regs_orig_ax), 8),
        arg0: field(conf!(regs_di), 8),
        ip: field(conf!(regs_ip), 8),
        sp: field(conf!(regs_sp), 8),
        bp: field(conf!(regs_bp), 8),
    }
}

/// Walk the user stack from `ip`, `sp` and the frame pointer `bp`, and store it in STACKS
/// under its id: the id, or -1 (counted as `StackMissed`).
#[inline(always)]
pub fn walk_user_stack(ip: u64, sp: u64, bp: u64) -> i32 {
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    let Some(stack) = STACK_SCRATCH.get_ptr_mut(0) else {
        return -1;
    };
    // SAFETY: this CPU's slot, one program at a time.
    let stack = unsafe { &mut *stack };
    stack.frames[0] = ip;
    let mut hash = (FNV_OFFSET ^ ip).wrapping_mul(FNV_PRIME);
    let (mut len, mut fp, mut floor) = (1u32, bp, sp);
    for i in 1..STACK_FRAMES {
        // A frame pointer points into the stack above everything seen so far, aligned.
        if fp < floor || fp - floor > MAX_FRAME_SPAN || fp & 7 != 0 {
            break;
        }
        // SAFETY: bpf_probe_read_user copies with fault handling.
        let Ok([next, ret]) = (unsafe { bpf_probe_read_user(fp as *const [u64; 2]) }) else {
            break;
        };
        if ret == 0 {
            break;
        }
        stack.frames[i] = ret;
        hash = (hash ^ ret).wrapping_mul(FNV_PRIME);
        len = i as u32 + 1;
        floor = fp + 16;
        fp = next;
    }
    stack.len = len;
    stack.hash = hash;
    store(stack)
}

/// Put `stack` in STACKS under its id, unless that id holds another stack. Looked up first:
/// the same stack again is the common case, and a lookup costs less than a refused insert.
#[inline(always)]
fn store(stack: &UserStack) -> i32 {
    const BPF_NOEXIST: u64 = 1;
    let id = UserStack::id_of(stack.hash);
    // SAFETY: a copy of two fields of the map value.
    let known = unsafe { STACKS.get(&id) }.map(|k| (k.hash, k.len));
    let stored = match known {
        Some(k) => k == (stack.hash, stack.len),
        None => {
            STACKS.insert(&id, stack, BPF_NOEXIST).is_ok()
                // SAFETY: as above (another CPU stored a stack under this id meanwhile).
                || unsafe { STACKS.get(&id) }.is_some_and(|k| (k.hash, k.len) == (stack.hash, stack.len))
        }
    };
    if stored {
        return id as i32;
    }
    count(Counter::StackMissed);
    -1
}
