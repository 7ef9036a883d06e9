//! The wire contract between the eBPF programs and userspace: map keys, map values and the
//! redirect event. Everything is `#[repr(C)]` plain data, in network byte order where the kernel
//! hands it over that way, so both sides read the same bytes.
#![no_std]

/// 169.254.169.254, the IMDS IPv4 address, in network byte order as `bpf_sock_addr.user_ip4` holds it.
pub const IMDS_IPV4_BE: u32 = u32::from_ne_bytes([169, 254, 169, 254]);
/// fd00:ec2::254, the IMDS IPv6 address, as the four network-order words of `user_ip6`.
pub const IMDS_IPV6_BE: [u32; 4] = [
    u32::from_ne_bytes([0xfd, 0x00, 0x0e, 0xc2]),
    0,
    0,
    u32::from_ne_bytes([0x00, 0x00, 0x02, 0x54]),
];
/// The IMDS port (80) in network byte order, as `user_port` holds it.
pub const IMDS_PORT_BE: u32 = (80u16).to_be() as u32;

/// `SO_MARK` that spot-sim puts on its own sockets (the passthrough upstream) so the
/// redirect never catches them, whatever cgroup spot-sim itself runs in. ASCII "SPOT".
pub const OWN_SOCKET_MARK: u32 = 0x5350_4f54;

/// How deep the eBPF side walks up the cgroup tree to find the target a process belongs to.
pub const MAX_CGROUP_DEPTH: u32 = 32;

/// Where a target's connects go: its responder's ports on loopback, in the target's own
/// network namespace. Keyed by the target cgroup's id (the inode of its cgroup v2 directory).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Target {
    /// Responder port for IPv4 (and IPv4-mapped IPv6), host byte order. 0: leave IPv4 alone.
    pub port4: u16,
    /// Responder port on `::1`, host byte order. 0: leave native IPv6 alone.
    pub port6: u16,
    /// A stable index userspace uses to name the target in events.
    pub index: u32,
    /// Redirects so far, counted by the kernel (userspace writes 0 when it attaches).
    pub redirects: u64,
}

/// Sent through the ring buffer for a process's first redirect, then at most one a second per
/// process (`Target::redirects` holds the exact count).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RedirectEvent {
    pub pid: u32,
    pub tgid: u32,
    pub cgroup_id: u64,
    /// When the connect was redirected (`bpf_ktime_get_ns`, CLOCK_MONOTONIC): the record's
    /// time, whenever spot-sim gets to read it.
    pub ktime_ns: u64,
    pub target_index: u32,
    /// `AF_INET` or `AF_INET6` of the socket.
    pub family: u32,
    /// Original destination, network order.
    pub orig_addr: [u32; 4],
    /// 1 when the IPv6 destination was an IPv4-mapped IMDS address.
    pub mapped: u32,
    pub comm: [u8; 16],
}

pub const AF_INET: u32 = 2;
pub const AF_INET6: u32 = 10;

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain `#[repr(C)]` data with no padding-dependent invariants; any bit pattern is valid.
    unsafe impl aya::Pod for super::Target {}
}

/// `ProcEvent::kind`: a process of a target called execve.
pub const PROC_EXEC: u32 = 1;
/// `ProcEvent::kind`: a thread-group leader of a target exited.
pub const PROC_EXIT: u32 = 2;

/// Sent through the `PROCS` ring buffer when a target's process starts a program or exits:
/// rare next to connects, so one record each is cheap.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ProcEvent {
    /// [`PROC_EXEC`] or [`PROC_EXIT`].
    pub kind: u32,
    pub tgid: u32,
    pub target_index: u32,
    pub _pad: u32,
    /// `bpf_ktime_get_ns` (CLOCK_MONOTONIC) when it happened.
    pub ktime_ns: u64,
    pub comm: [u8; 16],
}

/// Longest command line (argv, NUL-separated, as `/proc/PID/cmdline` has it) the kernel copies
/// out with a program start; a longer one is cut there.
pub const EXEC_ARGS_LEN: usize = 256;

/// A program start: a [`ProcEvent`] of kind [`PROC_EXEC`] and the new program's command line,
/// read in the kernel at the exec itself, so even a program that is gone a millisecond later
/// (a `kubectl drain` that fails at once) keeps its argv.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExecEvent {
    pub proc: ProcEvent,
    /// Bytes of `args` the kernel filled: 0 when it could not read them.
    pub args_len: u32,
    /// The whole command line's length (more than `args_len` when it was cut).
    pub args_total: u32,
    pub args: [u8; EXEC_ARGS_LEN],
}

/// Where the running kernel keeps a process's command line: the byte offsets of
/// `task_struct.mm`, `mm_struct.arg_start` and `mm_struct.arg_end`. They differ between kernel
/// builds, so userspace reads them from the kernel's BTF and writes them into the eBPF object
/// before loading it (the `ARGV_OFFSETS` global). All zero: unknown, and program starts carry
/// no command line.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArgvOffsets {
    pub task_mm: u32,
    pub mm_arg_start: u32,
    pub mm_arg_end: u32,
    pub _pad: u32,
}

impl ArgvOffsets {
    pub const UNKNOWN: ArgvOffsets = ArgvOffsets {
        task_mm: 0,
        mm_arg_start: 0,
        mm_arg_end: 0,
        _pad: 0,
    };

    pub fn known(&self) -> bool {
        self.task_mm != 0 && self.mm_arg_end != 0
    }
}

/// A connect from a target to anything but the IMDS, aggregated in the kernel per destination
/// and command: a busy workload costs one hash update per connect, not an event.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct OutboundKey {
    pub target_index: u32,
    /// Destination port, host byte order.
    pub port: u16,
    /// 4 or 6.
    pub family: u8,
    /// 6 (TCP) or 17 (UDP).
    pub proto: u8,
    /// Destination address bytes (IPv4 uses the first four).
    pub addr: [u8; 16],
    pub comm: [u8; 16],
}

/// What the kernel counted for one [`OutboundKey`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutboundValue {
    /// `bpf_ktime_get_ns` of the first and the latest connect.
    pub first_ns: u64,
    pub last_ns: u64,
    pub count: u64,
    /// The process that made the first one.
    pub tgid: u32,
    pub _pad: u32,
}

#[cfg(feature = "user")]
mod user_activity {
    // SAFETY: plain `#[repr(C)]` data without implicit padding; any bit pattern is valid.
    unsafe impl aya::Pod for super::OutboundKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::OutboundValue {}
    // SAFETY: as above (four u32, no padding).
    unsafe impl aya::Pod for super::ArgvOffsets {}
}
