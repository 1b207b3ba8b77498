//! Start-up profiling of the native backend: with `DGM_SANDBOX_TRACE=1` in
//! the environment every execution prints one line on stderr with the time
//! (µs since the start of `run`) at which each set-up phase ended, in the
//! parent and in the sandbox's init and payload processes. The children write
//! their timestamps (`CLOCK_MONOTONIC`, no allocation) into a shared
//! anonymous page mapped before the clone.

use std::sync::OnceLock;

/// Slots of the trace page.
#[derive(Debug, Clone, Copy)]
#[repr(usize)]
pub enum Mark {
    Start = 0,
    Cgroup,
    Plan,
    Cloned,
    IdMaps,
    CgroupAdd,
    Released,
    InitStart,
    InitReleased,
    Sources,
    Root,
    Pivot,
    InitCgroup,
    PayloadStart,
    Exec,
    PayloadExited,
    Exited,
    Reaped,
    Outputs,
    Cleaned,
}

const NAMES: &[&str] = &[
    "start",
    "cgroup",
    "plan",
    "cloned",
    "idmaps",
    "cg_add",
    "released",
    "init",
    "init_released",
    "sources",
    "root",
    "pivot",
    "init_cgroup",
    "payload",
    "exec",
    "payload_exit",
    "exited",
    "reaped",
    "outputs",
    "cleaned",
];
const SLOTS: usize = 32;

pub fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("DGM_SANDBOX_TRACE").is_some_and(|v| v != "0"))
}

/// Monotonic nanoseconds, async-signal-safe (vDSO).
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime into a stack struct.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A shared page the parent and the sandbox's processes write timestamps to.
pub struct Trace {
    page: *mut u64,
}

// SAFETY: the page is plain memory written with volatile stores.
unsafe impl Send for Trace {}
unsafe impl Sync for Trace {}

impl Trace {
    /// A trace page when `DGM_SANDBOX_TRACE` is set, else a no-op tracer.
    pub fn new() -> Trace {
        if !enabled() {
            return Trace {
                page: std::ptr::null_mut(),
            };
        }
        // SAFETY: a fresh shared anonymous mapping, unmapped on drop.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        let page = if p == libc::MAP_FAILED {
            std::ptr::null_mut()
        } else {
            p as *mut u64
        };
        let t = Trace { page };
        t.mark(Mark::Start);
        t
    }

    /// The raw page, for the children (null when tracing is off).
    pub fn page(&self) -> *mut u64 {
        self.page
    }

    pub fn mark(&self, m: Mark) {
        mark(self.page, m);
    }

    /// Prints the line (when enabled).
    pub fn report(&self, what: &str) {
        if self.page.is_null() {
            return;
        }
        // SAFETY: reading our own mapping; the children are gone.
        let read = |i: usize| unsafe { std::ptr::read_volatile(self.page.add(i)) };
        let t0 = read(Mark::Start as usize);
        let mut marks: Vec<(u64, &str)> = NAMES
            .iter()
            .enumerate()
            .skip(1)
            .map(|(i, name)| (read(i), *name))
            .filter(|(t, _)| *t != 0)
            .collect();
        marks.sort();
        let mut line = format!("dgm-sandbox trace [{what}]:");
        let mut prev = t0;
        for (t, name) in marks {
            line.push_str(&format!(
                " {name}={:.0}(+{:.0})",
                t.saturating_sub(t0) as f64 / 1000.0,
                t.saturating_sub(prev) as f64 / 1000.0
            ));
            prev = t;
        }
        eprintln!("{line} µs");
    }
}

impl Drop for Trace {
    fn drop(&mut self) {
        if !self.page.is_null() {
            // SAFETY: our own mapping.
            unsafe { libc::munmap(self.page as *mut libc::c_void, 4096) };
        }
    }
}

/// Records a timestamp in slot `m` of `page` (no-op when null). Safe to call
/// between clone and exec.
pub fn mark(page: *mut u64, m: Mark) {
    if page.is_null() || (m as usize) >= SLOTS {
        return;
    }
    // SAFETY: `page` is a live 4 KiB mapping and the slot is in range.
    unsafe { std::ptr::write_volatile(page.add(m as usize), now_ns()) };
}
