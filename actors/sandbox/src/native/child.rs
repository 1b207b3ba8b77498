//! The code that runs between `clone` and `execve`. The parent is a
//! multi-threaded tokio process, so the cloned child may not allocate, lock or
//! panic: everything is prepared in [`Plan`] beforehand and this module only
//! makes raw syscalls. Failures are reported to the parent as a fixed-size
//! record on a pipe. In particular the id-changing calls go straight to the
//! kernel: glibc's `setresuid`/`setgroups` broadcast to all threads of the
//! parent under a lock that may be held at the moment of the clone (seen
//! here as a sandbox hanging on a futex until its timeout).
//!
//! Process layout: the parent clones `init` (pid 1 of a new pid namespace,
//! inside new user/mount/ipc/uts/cgroup/net namespaces). `init` builds the
//! curated root, pivots into it, forks the payload and reaps until the payload
//! exits; then it reports the payload's wait status and exits, and the kernel
//! kills whatever else is left in the namespace.

use std::ffi::CString;

use libc::{c_char, c_int, c_ulong, c_void};

use super::landlock;
use super::trace::{Mark, mark};

/// Fds the init process finds at fixed numbers after it rearranges them.
pub const FD_SYNC: c_int = 3;
pub const FD_ERR: c_int = 4;
pub const FD_STATUS: c_int = 5;

/// The uid/gid the payload has inside its user namespace.
pub const SANDBOX_ID: u32 = 1000;

/// Where a step failed; sent to the parent with the errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Stage {
    Fds = 1,
    Sync,
    Groups,
    OpenSource,
    Propagation,
    FsIds,
    Op,
    Pivot,
    RootReadOnly,
    Hostname,
    Fork,
    Ids,
    Caps,
    Rlimit,
    Chdir,
    NoNewPrivs,
    Landlock,
    Seccomp,
    Exec,
}

impl Stage {
    pub fn from_u32(v: u32) -> Option<Stage> {
        use Stage::*;
        [
            Fds,
            Sync,
            Groups,
            OpenSource,
            Propagation,
            FsIds,
            Op,
            Pivot,
            RootReadOnly,
            Hostname,
            Fork,
            Ids,
            Caps,
            Rlimit,
            Chdir,
            NoNewPrivs,
            Landlock,
            Seccomp,
            Exec,
        ]
        .into_iter()
        .find(|s| *s as u32 == v)
    }
}

/// One step of building the root, executed in order by init.
#[derive(Debug)]
pub enum Op {
    Mkdir(CString),
    /// An empty file to bind a file onto.
    Touch(CString),
    Tmpfs {
        target: CString,
        data: CString,
    },
    /// Bind host source number `source` (see [`Plan::sources`]) onto target.
    Bind {
        source: usize,
        target: CString,
    },
    /// Bind a path of the new tree onto itself read-only (skipped when the
    /// path does not exist).
    SelfBindReadOnly(CString),
    Symlink {
        target: CString,
        link: CString,
    },
    WriteFile {
        path: CString,
        data: Vec<u8>,
    },
    Proc(CString),
    /// Read-only, nosuid, nodev (recursively).
    ReadOnly(CString),
}

/// Everything the children need, prepared (and allocated) by the parent.
pub struct Plan {
    /// Host paths opened with O_PATH by init before it gives up host access.
    pub sources: Vec<CString>,
    pub source_fds: Vec<c_int>,
    pub ops: Vec<Op>,
    /// The host-side path the new root is mounted on (inside init's private
    /// mount namespace only).
    pub new_root: CString,
    pub hostname: Vec<u8>,
    pub drop_groups: bool,
    pub workdir: CString,
    /// Candidate paths for argv[0] in PATH order.
    pub exec_candidates: Vec<CString>,
    pub argv: Vec<CString>,
    pub argv_ptrs: Vec<*const c_char>,
    pub envp: Vec<CString>,
    pub envp_ptrs: Vec<*const c_char>,
    pub rlimits: Vec<(c_int, u64)>,
    pub landlock: Option<(landlock::RulesetAttr, usize)>,
    pub landlock_rules: Vec<(CString, u64)>,
    pub seccomp: Vec<libc::sock_filter>,
    /// Parent's fds for the child ends: stdin, stdout, stderr, sync, err, status.
    pub fds: [c_int; 6],
    /// The shared trace page (null unless `DGM_SANDBOX_TRACE` is set).
    pub trace: *mut u64,
    /// Stack of the payload between its `clone(CLONE_VM | CLONE_VFORK)` and
    /// its `execve` (it shares init's memory until then).
    pub payload_stack: Vec<u8>,
}

impl Plan {
    /// Fills the pointer arrays; call once all strings are final.
    pub fn finish(&mut self) {
        self.argv_ptrs = self.argv.iter().map(|s| s.as_ptr()).collect();
        self.argv_ptrs.push(std::ptr::null());
        self.envp_ptrs = self.envp.iter().map(|s| s.as_ptr()).collect();
        self.envp_ptrs.push(std::ptr::null());
        self.source_fds = vec![-1; self.sources.len()];
    }
}

fn errno() -> c_int {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Reports a failure to the parent and exits. Never returns.
fn fail(stage: Stage, index: usize, err: c_int) -> ! {
    let mut rec = [0u8; 12];
    rec[0..4].copy_from_slice(&(stage as u32).to_ne_bytes());
    rec[4..8].copy_from_slice(&(index as u32).to_ne_bytes());
    rec[8..12].copy_from_slice(&err.to_ne_bytes());
    // SAFETY: writing a stack buffer to our error pipe, then exiting.
    unsafe {
        libc::write(FD_ERR, rec.as_ptr() as *const c_void, rec.len());
        libc::_exit(126);
    }
}

fn check(r: impl Into<i64>, stage: Stage, index: usize) {
    if r.into() < 0 {
        fail(stage, index, errno());
    }
}

/// "/proc/self/fd/N" without allocating.
fn proc_fd_path(fd: c_int, buf: &mut [u8; 32]) -> *const c_char {
    let prefix = b"/proc/self/fd/";
    buf[..prefix.len()].copy_from_slice(prefix);
    let mut digits = [0u8; 12];
    let mut n = fd as u32;
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..len {
        buf[prefix.len() + i] = digits[len - 1 - i];
    }
    buf[prefix.len() + len] = 0;
    buf.as_ptr() as *const c_char
}

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const AT_RECURSIVE: c_int = 0x8000;

/// Makes the mount at `path` read-only, nosuid, nodev; falls back to a
/// remount (keeping locked flags) on kernels without mount_setattr.
unsafe fn make_read_only(path: *const c_char, recursive: bool) -> c_int {
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let flags = if recursive { AT_RECURSIVE } else { 0 };
    // SAFETY: path is a NUL-terminated string, attr lives on the stack.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path,
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r == 0 {
        return 0;
    }
    if errno() != libc::ENOSYS {
        return -1;
    }
    // SAFETY: statvfs into a zeroed stack struct.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path, &mut st) } != 0 {
        return -1;
    }
    let mut keep: c_ulong = 0;
    for (st_flag, ms_flag) in [
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
    ] {
        if st.f_flag & st_flag != 0 {
            keep |= ms_flag;
        }
    }
    // SAFETY: remount of an existing bind mount.
    unsafe {
        libc::mount(
            std::ptr::null(),
            path,
            std::ptr::null(),
            libc::MS_REMOUNT
                | libc::MS_BIND
                | libc::MS_RDONLY
                | libc::MS_NOSUID
                | libc::MS_NODEV
                | keep,
            std::ptr::null(),
        )
    }
}

/// Moves the fds init needs to 0..=5 and closes everything else.
unsafe fn arrange_fds(fds: &[c_int; 6]) {
    let mut high = [0 as c_int; 6];
    for (i, fd) in fds.iter().enumerate() {
        // SAFETY: duplicating fds we were given.
        high[i] = unsafe { libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 64) };
        if high[i] < 0 {
            // FD_ERR is not in place yet: nothing to report on.
            unsafe { libc::_exit(125) };
        }
    }
    for (i, fd) in high.iter().enumerate() {
        // SAFETY: dup2 onto the fixed numbers; clears CLOEXEC on the target.
        if unsafe { libc::dup2(*fd, i as c_int) } < 0 {
            unsafe { libc::_exit(125) };
        }
    }
    // SAFETY: closes all fds from 6 up, including the high copies.
    let r = unsafe { libc::syscall(libc::SYS_close_range, 6u32, u32::MAX, 0u32) };
    if r != 0 {
        for fd in 6..65536 {
            unsafe { libc::close(fd) };
        }
    }
    for fd in [FD_SYNC, FD_ERR, FD_STATUS] {
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
}

/// Entry point of the cloned init process. Never returns.
///
/// # Safety
/// Must be called only in the child right after `clone`, with a plan built by
/// the parent.
pub unsafe fn init_main(plan: &mut Plan) -> ! {
    unsafe {
        mark(plan.trace, Mark::InitStart);
        // Default signal dispositions (the parent's handlers mean nothing here),
        // nothing blocked, and die with the thread that cloned us.
        for sig in 1..32 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as c_ulong);

        arrange_fds(&plan.fds);

        // Wait until the parent has written our uid/gid maps. It puts us in
        // the sandbox's cgroup while we build the root, and sends a second
        // byte once that is done; the payload is forked only after it.
        wait_sync();
        mark(plan.trace, Mark::InitReleased);

        if plan.drop_groups {
            check(
                libc::syscall(libc::SYS_setgroups, 0usize, std::ptr::null::<libc::gid_t>()),
                Stage::Groups,
                0,
            );
        }
        // Open the host sources while we still have the host's view and ids.
        for (i, src) in plan.sources.iter().enumerate() {
            let fd = libc::open(src.as_ptr(), libc::O_PATH | libc::O_CLOEXEC);
            if fd < 0 {
                fail(Stage::OpenSource, i, errno());
            }
            plan.source_fds[i] = fd;
        }
        check(
            libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ),
            Stage::Propagation,
            0,
        );
        mark(plan.trace, Mark::Sources);
        // Files we create must belong to an id mapped in our namespace.
        libc::syscall(libc::SYS_setfsgid, SANDBOX_ID);
        libc::syscall(libc::SYS_setfsuid, SANDBOX_ID);
        if libc::syscall(libc::SYS_setfsuid, SANDBOX_ID) != SANDBOX_ID as libc::c_long {
            fail(Stage::FsIds, 0, libc::EPERM);
        }
        libc::umask(0o022);

        for (i, op) in plan.ops.iter().enumerate() {
            let r: c_int = match op {
                Op::Mkdir(p) => {
                    let r = libc::mkdir(p.as_ptr(), 0o755);
                    if r < 0 && errno() == libc::EEXIST {
                        0
                    } else {
                        r
                    }
                }
                Op::Touch(p) => {
                    let fd = libc::open(
                        p.as_ptr(),
                        libc::O_WRONLY | libc::O_CREAT | libc::O_CLOEXEC,
                        0o644,
                    );
                    if fd >= 0 {
                        libc::close(fd);
                        0
                    } else {
                        -1
                    }
                }
                Op::Tmpfs { target, data } => libc::mount(
                    c"tmpfs".as_ptr(),
                    target.as_ptr(),
                    c"tmpfs".as_ptr(),
                    libc::MS_NOSUID | libc::MS_NODEV,
                    data.as_ptr() as *const c_void,
                ),
                Op::Bind { source, target } => {
                    let mut buf = [0u8; 32];
                    let src = proc_fd_path(plan.source_fds[*source], &mut buf);
                    libc::mount(
                        src,
                        target.as_ptr(),
                        std::ptr::null(),
                        libc::MS_BIND | libc::MS_REC,
                        std::ptr::null(),
                    )
                }
                Op::SelfBindReadOnly(p) => {
                    let r = libc::mount(
                        p.as_ptr(),
                        p.as_ptr(),
                        std::ptr::null(),
                        libc::MS_BIND | libc::MS_REC,
                        std::ptr::null(),
                    );
                    if r < 0 && errno() == libc::ENOENT {
                        0
                    } else if r < 0 {
                        r
                    } else {
                        make_read_only(p.as_ptr(), true)
                    }
                }
                Op::Symlink { target, link } => libc::symlink(target.as_ptr(), link.as_ptr()),
                Op::WriteFile { path, data } => {
                    let fd = libc::open(
                        path.as_ptr(),
                        libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
                        0o644,
                    );
                    if fd < 0 {
                        -1
                    } else {
                        let mut off = 0;
                        let mut r = 0;
                        while off < data.len() {
                            let n = libc::write(
                                fd,
                                data[off..].as_ptr() as *const c_void,
                                data.len() - off,
                            );
                            if n <= 0 {
                                r = -1;
                                break;
                            }
                            off += n as usize;
                        }
                        libc::close(fd);
                        r
                    }
                }
                Op::Proc(p) => libc::mount(
                    c"proc".as_ptr(),
                    p.as_ptr(),
                    c"proc".as_ptr(),
                    libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                    std::ptr::null(),
                ),
                Op::ReadOnly(p) => make_read_only(p.as_ptr(), true),
            };
            if r < 0 {
                fail(Stage::Op, i, errno());
            }
        }
        for fd in plan.source_fds.iter() {
            libc::close(*fd);
        }
        mark(plan.trace, Mark::Root);

        check(libc::chdir(plan.new_root.as_ptr()), Stage::Pivot, 0);
        check(
            libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()),
            Stage::Pivot,
            1,
        );
        check(
            libc::umount2(c".".as_ptr(), libc::MNT_DETACH),
            Stage::Pivot,
            2,
        );
        check(libc::chdir(c"/".as_ptr()), Stage::Pivot, 3);
        check(make_read_only(c"/".as_ptr(), false), Stage::RootReadOnly, 0);
        check(
            libc::sethostname(plan.hostname.as_ptr() as *const c_char, plan.hostname.len()),
            Stage::Hostname,
            0,
        );
        mark(plan.trace, Mark::Pivot);
        wait_sync();
        libc::close(FD_SYNC);
        mark(plan.trace, Mark::InitCgroup);

        // The payload shares our memory (no copy of the parent's page tables)
        // and we are suspended until it has exec'd or exited: the posix_spawn
        // recipe. It runs only `payload_main` on its own stack.
        let stack = plan.payload_stack.as_mut_ptr_range().end;
        let stack = ((stack as usize) & !15usize) as *mut c_void;
        let pid = libc::clone(
            payload_entry,
            stack,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            plan as *mut Plan as *mut c_void,
        );
        if pid < 0 {
            fail(Stage::Fork, 0, errno());
        }
        let payload = pid as libc::pid_t;
        libc::close(FD_ERR);
        libc::close(0);
        libc::close(1);
        libc::close(2);
        loop {
            let mut status: c_int = 0;
            let r = libc::waitpid(-1, &mut status, 0);
            if r == payload {
                mark(plan.trace, Mark::PayloadExited);
                libc::write(
                    FD_STATUS,
                    &status as *const c_int as *const c_void,
                    std::mem::size_of::<c_int>(),
                );
                libc::_exit(0);
            }
            if r < 0 && errno() != libc::EINTR {
                libc::_exit(124);
            }
        }
    }
}

/// Blocks until the parent sends the next byte on the sync pipe; exits when
/// the parent is gone or gave up.
unsafe fn wait_sync() {
    let mut byte = 0u8;
    loop {
        // SAFETY: a one-byte read into the stack.
        let r = unsafe { libc::read(FD_SYNC, &mut byte as *mut u8 as *mut c_void, 1) };
        if r == 1 {
            return;
        }
        if r < 0 && errno() == libc::EINTR {
            continue;
        }
        // SAFETY: exiting the child.
        unsafe { libc::_exit(125) };
    }
}

extern "C" fn payload_entry(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is init's plan, alive while init is suspended (vfork).
    unsafe { payload_main(&*(arg as *const Plan)) }
}

/// The payload process: drop every privilege, confine, exec.
unsafe fn payload_main(plan: &Plan) -> ! {
    unsafe {
        mark(plan.trace, Mark::PayloadStart);
        libc::close(FD_STATUS);
        // Empty the bounding set while we may (CAP_SETPCAP in our namespace).
        for cap in 0..64 {
            libc::prctl(libc::PR_CAPBSET_DROP, cap as c_ulong, 0, 0, 0);
        }
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as c_ulong,
            0,
            0,
            0,
        );
        let id = SANDBOX_ID;
        check(
            libc::syscall(libc::SYS_setresgid, id, id, id),
            Stage::Ids,
            0,
        );
        check(
            libc::syscall(libc::SYS_setresuid, id, id, id),
            Stage::Ids,
            1,
        );
        // No capabilities at all, in any set.
        #[repr(C)]
        struct CapHeader {
            version: u32,
            pid: c_int,
        }
        #[repr(C)]
        struct CapData {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        let hdr = CapHeader {
            version: 0x2008_0522,
            pid: 0,
        };
        let data = [
            CapData {
                effective: 0,
                permitted: 0,
                inheritable: 0,
            },
            CapData {
                effective: 0,
                permitted: 0,
                inheritable: 0,
            },
        ];
        check(
            libc::syscall(libc::SYS_capset, &hdr as *const CapHeader, data.as_ptr()),
            Stage::Caps,
            0,
        );
        for (i, (res, value)) in plan.rlimits.iter().enumerate() {
            let rl = libc::rlimit {
                rlim_cur: *value,
                rlim_max: *value,
            };
            check(libc::setrlimit(*res as _, &rl), Stage::Rlimit, i);
        }
        check(libc::chdir(plan.workdir.as_ptr()), Stage::Chdir, 0);
        check(
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0),
            Stage::NoNewPrivs,
            0,
        );

        if let Some((attr, size)) = &plan.landlock {
            let rs = landlock::create(attr, *size);
            if rs < 0 {
                fail(Stage::Landlock, 0, errno());
            }
            for (i, (path, access)) in plan.landlock_rules.iter().enumerate() {
                let fd = libc::open(path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC);
                if fd < 0 {
                    continue;
                }
                if landlock::add_path_rule(rs as c_int, fd, *access) < 0 {
                    fail(Stage::Landlock, i + 1, errno());
                }
                libc::close(fd);
            }
            if landlock::restrict_self(rs as c_int) < 0 {
                fail(Stage::Landlock, usize::MAX >> 1, errno());
            }
            libc::close(rs as c_int);
        }

        let prog = libc::sock_fprog {
            len: plan.seccomp.len() as u16,
            filter: plan.seccomp.as_ptr() as *mut libc::sock_filter,
        };
        check(
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER as c_ulong,
                &prog as *const libc::sock_fprog as c_ulong,
                0,
                0,
            ),
            Stage::Seccomp,
            0,
        );

        mark(plan.trace, Mark::Exec);
        let mut last = libc::ENOENT;
        for cand in &plan.exec_candidates {
            libc::execve(
                cand.as_ptr(),
                plan.argv_ptrs.as_ptr(),
                plan.envp_ptrs.as_ptr(),
            );
            let e = errno();
            if e != libc::ENOENT && e != libc::ENOTDIR {
                last = e;
            }
        }
        fail(Stage::Exec, 0, last);
    }
}
