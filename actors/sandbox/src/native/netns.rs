//! Fresh, empty network namespaces made ahead of time.
//!
//! Creating a network namespace is the most expensive part of starting a
//! sandbox (about 1 ms of kernel work here, `setup_net`). When dgm runs as
//! root, a background thread keeps a few fresh ones ready: it `unshare`s a
//! new network namespace, hands out an fd to it and repeats. The thread that
//! clones a sandbox enters one of them just for the `clone` (network
//! namespaces are per thread) and goes back at once; the sandbox's init
//! inherits it. Each namespace is used by exactly one sandbox and is
//! destroyed with it, as with `CLONE_NEWNET`. The difference: it is owned by
//! the host's user namespace, so not even the sandbox's init holds
//! `CAP_NET_ADMIN` over it. Without root, or where `unshare` is refused, the
//! pool stays empty and the sandbox falls back to `CLONE_NEWNET`.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Mutex, OnceLock};

/// Namespaces kept ready (plus the one the producer is in).
const READY: usize = 4;

static POOL: OnceLock<Option<Mutex<Receiver<OwnedFd>>>> = OnceLock::new();

fn open_own() -> Option<OwnedFd> {
    // SAFETY: open of a NUL-terminated path; we own the fd.
    let fd = unsafe {
        libc::open(
            c"/proc/thread-self/ns/net".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    // SAFETY: a fresh fd.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

fn produce(tx: SyncSender<OwnedFd>) {
    loop {
        // SAFETY: unshare on this (dedicated) thread only.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return;
        }
        let Some(fd) = open_own() else { return };
        if tx.send(fd).is_err() {
            return;
        }
    }
}

/// Starts the producer (once per process) when dgm is root, unless
/// `DGM_SANDBOX_NETNS_POOL=0`.
pub fn start() {
    POOL.get_or_init(|| {
        // SAFETY: no preconditions.
        if unsafe { libc::geteuid() } != 0
            || std::env::var_os("DGM_SANDBOX_NETNS_POOL").is_some_and(|v| v == "0")
        {
            return None;
        }
        let (tx, rx) = sync_channel(READY);
        std::thread::Builder::new()
            .name("dgm-sandbox-netns".into())
            .spawn(move || produce(tx))
            .ok()?;
        Some(Mutex::new(rx))
    });
}

/// A fresh network namespace, if one is ready.
pub fn take() -> Option<OwnedFd> {
    let rx = POOL.get()?.as_ref()?.lock().ok()?;
    rx.try_recv().ok()
}

/// The calling thread is inside another network namespace until drop.
pub struct Entered {
    back: OwnedFd,
}

impl Entered {
    /// Moves the calling thread into `ns`; `None` (and no change) on failure.
    pub fn enter(ns: &OwnedFd) -> Option<Entered> {
        let back = open_own()?;
        // SAFETY: setns of this thread to an fd we own.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return None;
        }
        Some(Entered { back })
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        // SAFETY: back to the namespace the thread came from.
        if unsafe { libc::setns(self.back.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            // Never leave a dgm thread in a sandbox's network namespace.
            eprintln!(
                "dgm-sandbox: cannot return to the host network namespace: {}",
                std::io::Error::last_os_error()
            );
            std::process::abort();
        }
    }
}
