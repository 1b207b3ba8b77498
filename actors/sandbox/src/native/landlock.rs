//! Landlock through raw syscalls: the payload may read and execute what its
//! curated root shows, write only its scratch dir and a few device files, make
//! no TCP connection unless the network was asked for, and (ABI 6+) signal no
//! process outside its own domain. Defence in depth behind the mount
//! namespace; the ruleset is computed in the parent, applied in the child.

use libc::c_long;

const SYS_CREATE_RULESET: c_long = 444;
const SYS_ADD_RULE: c_long = 445;
const SYS_RESTRICT_SELF: c_long = 446;
const CREATE_RULESET_VERSION: u32 = 1;
const RULE_PATH_BENEATH: u32 = 1;

pub const EXECUTE: u64 = 1 << 0;
pub const WRITE_FILE: u64 = 1 << 1;
pub const READ_FILE: u64 = 1 << 2;
pub const READ_DIR: u64 = 1 << 3;
const REFER: u64 = 1 << 13;
const TRUNCATE: u64 = 1 << 14;
const IOCTL_DEV: u64 = 1 << 15;
const NET_BIND_TCP: u64 = 1 << 0;
const NET_CONNECT_TCP: u64 = 1 << 1;
const SCOPE_ABSTRACT_UNIX_SOCKET: u64 = 1 << 0;
const SCOPE_SIGNAL: u64 = 1 << 1;

#[repr(C)]
pub struct RulesetAttr {
    pub handled_access_fs: u64,
    pub handled_access_net: u64,
    pub scoped: u64,
}

#[repr(C, packed)]
pub struct PathBeneathAttr {
    pub allowed_access: u64,
    pub parent_fd: i32,
}

/// The Landlock ABI this kernel speaks, or `None` when Landlock is off.
pub fn abi() -> Option<u32> {
    // SAFETY: the documented version query: NULL attr, size 0, the VERSION flag.
    let r = unsafe {
        libc::syscall(
            SYS_CREATE_RULESET,
            std::ptr::null::<RulesetAttr>(),
            0usize,
            CREATE_RULESET_VERSION,
        )
    };
    if r > 0 { Some(r as u32) } else { None }
}

/// Every filesystem right the ABI knows.
pub fn all_fs(abi: u32) -> u64 {
    let mut fs = (1u64 << 13) - 1;
    if abi >= 2 {
        fs |= REFER;
    }
    if abi >= 3 {
        fs |= TRUNCATE;
    }
    if abi >= 5 {
        fs |= IOCTL_DEV;
    }
    fs
}

/// The ruleset attribute for a payload; the size to pass depends on the ABI.
pub fn ruleset(abi: u32, network: bool) -> (RulesetAttr, usize) {
    let attr = RulesetAttr {
        handled_access_fs: all_fs(abi),
        handled_access_net: if abi >= 4 && !network {
            NET_BIND_TCP | NET_CONNECT_TCP
        } else {
            0
        },
        scoped: if abi >= 6 {
            SCOPE_SIGNAL | SCOPE_ABSTRACT_UNIX_SOCKET
        } else {
            0
        },
    };
    let size = if abi >= 6 {
        24
    } else if abi >= 4 {
        16
    } else {
        8
    };
    (attr, size)
}

/// Async-signal-safe: creates the ruleset fd.
pub unsafe fn create(attr: &RulesetAttr, size: usize) -> c_long {
    // SAFETY: attr points to a live RulesetAttr of at least `size` bytes.
    unsafe { libc::syscall(SYS_CREATE_RULESET, attr as *const RulesetAttr, size, 0u32) }
}

/// Async-signal-safe: allows `access` beneath the directory or file `fd`.
pub unsafe fn add_path_rule(ruleset_fd: i32, fd: i32, access: u64) -> c_long {
    let rule = PathBeneathAttr {
        allowed_access: access,
        parent_fd: fd,
    };
    // SAFETY: rule is a live, packed path_beneath attribute.
    unsafe {
        libc::syscall(
            SYS_ADD_RULE,
            ruleset_fd,
            RULE_PATH_BENEATH,
            &rule as *const PathBeneathAttr,
            0u32,
        )
    }
}

/// Async-signal-safe: enforces the ruleset on the calling thread.
pub unsafe fn restrict_self(ruleset_fd: i32) -> c_long {
    // SAFETY: plain syscall on an fd we own.
    unsafe { libc::syscall(SYS_RESTRICT_SELF, ruleset_fd, 0u32) }
}
