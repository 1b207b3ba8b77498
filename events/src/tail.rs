//! The events this process committed lately, decoded, so that a reader
//! following the log from memory (the evolution engine) need not read its
//! own writes back from the database.
//!
//! Kept only once someone asks ([`Tail::after`] switches it on), at most
//! [`TAIL_CAP`] events (the oldest dropped first). It answers only when it
//! can prove the answer is the log itself: the events it returns are those
//! at positions `after + 1 ..` with no gap, and it says nothing (the reader
//! must read the log) when a position in between is missing — another
//! process's commit, or one that fell off.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::store::Recorded;

/// Events kept at most.
pub(crate) const TAIL_CAP: usize = 2_048;

#[derive(Default)]
pub(crate) struct Tail {
    /// Off until a reader asks: a process that never follows the log pays
    /// nothing for it.
    wanted: AtomicBool,
    events: Mutex<BTreeMap<u64, Recorded>>,
}

impl Tail {
    /// Whether commits should be kept (someone has asked for them).
    pub(crate) fn wanted(&self) -> bool {
        self.wanted.load(Ordering::Relaxed)
    }

    /// A poisoned lock only means another thread panicked between whole
    /// inserts: the map is still consistent.
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Recorded>> {
        self.events.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps the events of one commit (already in the log, at their
    /// positions). A commit larger than the whole tail is not kept: the
    /// reader reads it from the log.
    pub(crate) fn committed(&self, events: Vec<Recorded>) {
        if events.len() > TAIL_CAP {
            return;
        }
        let mut kept = self.lock();
        for event in events {
            kept.insert(event.position, event);
        }
        while kept.len() > TAIL_CAP {
            kept.pop_first();
        }
    }

    /// Every event after position `after`, when this process committed all
    /// of them and so knows them (an empty list when it committed nothing
    /// after `after`); `None` when the log must be read: something in
    /// between is not kept here.
    ///
    /// Read-your-writes, not a read of the database: events another process
    /// appended after this one's last commit show up only once this process
    /// commits again (its positions then leave a gap, and this says `None`).
    pub(crate) fn after(&self, after: u64) -> Option<Vec<Recorded>> {
        if !self.wanted.swap(true, Ordering::Relaxed) {
            // Nothing was kept before this first call.
            return None;
        }
        let kept = self.lock();
        let (&last, _) = kept.last_key_value()?;
        if last <= after {
            return Some(Vec::new());
        }
        let mut out = Vec::new();
        for (expected, (&position, event)) in (after + 1..).zip(kept.range(after + 1..)) {
            if position != expected {
                return None;
            }
            out.push(event.clone());
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, RunFailed};
    use crate::metadata::Metadata;

    fn at(position: u64) -> Recorded {
        Recorded {
            position,
            aggregate_type: "run".into(),
            aggregate_id: "r".into(),
            sequence: position,
            event: Event::RunFailed(RunFailed {
                run_id: "r".into(),
                error: String::new(),
            }),
            metadata: Metadata::new("test"),
        }
    }

    fn positions(events: Option<Vec<Recorded>>) -> Option<Vec<u64>> {
        events.map(|e| e.iter().map(|r| r.position).collect())
    }

    #[test]
    fn answers_only_without_gaps() {
        let tail = Tail::default();
        assert!(tail.after(0).is_none(), "off until asked");
        assert!(tail.after(0).is_none(), "on, but nothing kept yet");
        tail.committed(vec![at(5), at(6)]);
        assert_eq!(positions(tail.after(4)), Some(vec![5, 6]));
        assert_eq!(positions(tail.after(5)), Some(vec![6]));
        assert_eq!(positions(tail.after(6)), Some(vec![]));
        assert!(tail.after(3).is_none(), "position 4 is not known here");
        // Another process wrote 7: this one's next commit is at 8.
        tail.committed(vec![at(8)]);
        assert!(tail.after(6).is_none(), "the gap at 7 needs the log");
        // Commits of this process that finish out of order.
        tail.committed(vec![at(10)]);
        assert!(tail.after(8).is_none(), "9 is still in flight");
        tail.committed(vec![at(9)]);
        assert_eq!(positions(tail.after(8)), Some(vec![9, 10]));
    }

    #[test]
    fn keeps_at_most_the_cap() {
        let tail = Tail::default();
        let _ = tail.after(0);
        tail.committed((1..=TAIL_CAP as u64 + 10).map(at).collect());
        assert!(tail.after(0).is_none(), "a commit over the cap is not kept");
        for p in 1..=TAIL_CAP as u64 + 10 {
            tail.committed(vec![at(p)]);
        }
        assert!(tail.after(5).is_none(), "the oldest fell off");
        assert_eq!(tail.after(10).map(|e| e.len()), Some(TAIL_CAP));
    }
}
