//! Catch-up, as-of, rebuild and check for any [`Projection`].

use std::collections::BTreeMap;

use dgm_events::views::ViewChange;
use dgm_events::{Store, StoreError};

use crate::Projection;

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("view `{view}` row `{key}` cannot be read: {message} (run `dgm projections rebuild`)")]
    BadRow {
        view: String,
        key: String,
        message: String,
    },
}

const PAGE: u32 = 10_000;

pub type Rows<P> = BTreeMap<String, <P as Projection>::Row>;

fn decode<P: Projection>(raw: &BTreeMap<String, String>) -> Result<Rows<P>, ProjectionError> {
    raw.iter()
        .map(|(key, value)| {
            serde_json::from_str(value)
                .map(|row| (key.clone(), row))
                .map_err(|e| ProjectionError::BadRow {
                    view: P::NAME.into(),
                    key: key.clone(),
                    message: e.to_string(),
                })
        })
        .collect()
}

/// The rows as stored: JSON, in key order. Many rows (a rebuilt replay
/// buffer) are encoded on several threads.
fn encode<P: Projection>(rows: &Rows<P>) -> Vec<(String, String)> {
    const ROWS_PER_THREAD: usize = 2_000;
    const MAX_THREADS: usize = 4;
    fn encode_part<R: serde::Serialize>(rows: &[(&String, &R)]) -> Vec<(String, String)> {
        rows.iter()
            .map(|(k, v)| ((*k).clone(), serde_json::to_string(v).unwrap_or_default()))
            .collect()
    }
    let rows: Vec<(&String, &P::Row)> = rows.iter().collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_THREADS)
        .min(rows.len() / ROWS_PER_THREAD);
    if threads < 2 {
        return encode_part(&rows);
    }
    let part = rows.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let others: Vec<_> = rows
            .chunks(part)
            .skip(1)
            .map(|rows| scope.spawn(move || encode_part(rows)))
            .collect();
        let mut encoded = encode_part(&rows[..part]);
        for other in others {
            // Encoding does not panic (`unwrap_or_default` above); should a
            // thread die anyway, re-encode its part here.
            match other.join() {
                Ok(part) => encoded.extend(part),
                Err(_) => return encode_part(&rows),
            }
        }
        encoded
    })
}

/// What turns the `stored` rows into the `encoded` ones (both in key order).
fn diff(stored: &BTreeMap<String, String>, encoded: Vec<(String, String)>) -> ViewChange {
    let deletes = stored
        .keys()
        .filter(|k| {
            encoded
                .binary_search_by(|(key, _)| key.as_str().cmp(k.as_str()))
                .is_err()
        })
        .cloned()
        .collect();
    let upserts = encoded
        .into_iter()
        .filter(|(key, value)| stored.get(key) != Some(value))
        .collect();
    ViewChange { upserts, deletes }
}

/// Folds events `after < position <= up_to` into `rows`; returns the last position seen.
async fn fold<P: Projection>(
    store: &Store,
    rows: &mut Rows<P>,
    mut after: u64,
    up_to: Option<u64>,
) -> Result<u64, StoreError> {
    loop {
        let page = store.read(after, up_to, PAGE).await?;
        let Some(last) = page.last().map(|r| r.position) else {
            return Ok(after);
        };
        for event in &page {
            P::apply(rows, event);
        }
        after = last;
    }
}

/// Brings the stored view up to the head of the log and returns its rows.
pub async fn catch_up<P: Projection>(store: &Store) -> Result<Rows<P>, ProjectionError> {
    loop {
        let stored = store.load_view(P::NAME).await?;
        let mut rows = decode::<P>(&stored.rows)?;
        let to = fold::<P>(store, &mut rows, stored.checkpoint, None).await?;
        if to == stored.checkpoint {
            return Ok(rows);
        }
        let change = diff(&stored.rows, encode::<P>(&rows));
        if store
            .save_view(P::NAME, stored.checkpoint, to, &change)
            .await?
        {
            return Ok(rows);
        }
        // Another process advanced the view first: fold again from its rows.
    }
}

/// The view as it was right after event `position` (replayed in memory).
pub async fn as_of<P: Projection>(
    store: &Store,
    position: u64,
) -> Result<Rows<P>, ProjectionError> {
    let mut rows = Rows::<P>::new();
    fold::<P>(store, &mut rows, 0, Some(position)).await?;
    Ok(rows)
}

/// Replays the view from position 0 and replaces the stored one with it.
pub async fn rebuild<P: Projection>(store: &Store) -> Result<u64, ProjectionError> {
    let mut rows = Rows::<P>::new();
    let to = fold::<P>(store, &mut rows, 0, None).await?;
    store.replace_view(P::NAME, to, &encode::<P>(&rows)).await?;
    Ok(to)
}

/// One view being folded alongside others, type-erased so that a single
/// read of the log can feed every projection.
trait Folding: Send {
    fn name(&self) -> &'static str;
    /// Events at or below this position are already in the view.
    fn checkpoint(&self) -> u64;
    fn apply(&mut self, event: &dgm_events::Recorded);
    /// The folded rows as stored: JSON, in key order.
    fn encoded(&self) -> Vec<(String, String)>;
    fn stored(&self) -> &BTreeMap<String, String>;
}

struct Folder<P: Projection> {
    stored: dgm_events::views::ViewSnapshot,
    rows: Rows<P>,
}

impl<P: Projection> Folder<P> {
    /// Starts from the stored view, or from nothing (`fresh`).
    fn new(stored: dgm_events::views::ViewSnapshot, fresh: bool) -> Result<Self, ProjectionError> {
        let rows = if fresh {
            Rows::<P>::new()
        } else {
            decode::<P>(&stored.rows)?
        };
        Ok(Self { stored, rows })
    }
}

impl<P: Projection> Folding for Folder<P> {
    fn name(&self) -> &'static str {
        P::NAME
    }
    fn checkpoint(&self) -> u64 {
        self.stored.checkpoint
    }
    fn apply(&mut self, event: &dgm_events::Recorded) {
        P::apply(&mut self.rows, event);
    }
    fn encoded(&self) -> Vec<(String, String)> {
        encode::<P>(&self.rows)
    }
    fn stored(&self) -> &BTreeMap<String, String> {
        &self.stored.rows
    }
}

/// Where each view's fold starts.
#[derive(Clone, Copy, PartialEq)]
enum Start {
    /// From the stored rows and checkpoint.
    Stored,
    /// From nothing, with the stored rows kept aside to compare.
    Fresh,
    /// From nothing, without reading the stored view at all.
    Empty,
}

async fn folders(store: &Store, start: Start) -> Result<Vec<Box<dyn Folding>>, ProjectionError> {
    use crate::*;
    async fn one<P: Projection>(
        store: &Store,
        start: Start,
    ) -> Result<Box<dyn Folding>, ProjectionError> {
        let stored = match start {
            Start::Empty => dgm_events::views::ViewSnapshot::default(),
            Start::Stored | Start::Fresh => store.load_view(P::NAME).await?,
        };
        Ok(Box::new(Folder::<P>::new(stored, start != Start::Stored)?))
    }
    Ok(vec![
        one::<Archive>(store, start).await?,
        one::<RollbackHistory>(store, start).await?,
        one::<ReplayBuffer>(store, start).await?,
        one::<ReasoningBank>(store, start).await?,
        one::<Runs>(store, start).await?,
    ])
}

/// Reads the log once from the lowest checkpoint, feeding each view only the
/// events it has not seen and, when `limit` says so, none past its own bound.
async fn fold_all(
    store: &Store,
    views: &mut [Box<dyn Folding>],
    start: impl Fn(&dyn Folding) -> u64,
    up_to: Option<u64>,
    bound: impl Fn(&dyn Folding) -> Option<u64>,
) -> Result<u64, StoreError> {
    let starts: Vec<u64> = views.iter().map(|v| start(v.as_ref())).collect();
    let bounds: Vec<Option<u64>> = views.iter().map(|v| bound(v.as_ref())).collect();
    let mut after = starts.iter().copied().min().unwrap_or(0);
    loop {
        let page = store.read(after, up_to, PAGE).await?;
        let Some(last) = page.last().map(|r| r.position) else {
            return Ok(after);
        };
        for event in &page {
            for (i, view) in views.iter_mut().enumerate() {
                if event.position > starts[i] && bounds[i].is_none_or(|b| event.position <= b) {
                    view.apply(event);
                }
            }
        }
        after = last;
    }
}

/// Replays the log into every view in one pass and replaces each stored
/// view with the result (never reading the old rows).
pub async fn rebuild_all(store: &Store) -> Result<Vec<(&'static str, u64)>, ProjectionError> {
    let mut views = folders(store, Start::Empty).await?;
    let to = fold_all(store, &mut views, |_| 0, None, |_| None).await?;
    let mut done = Vec::new();
    for view in &views {
        store.replace_view(view.name(), to, &view.encoded()).await?;
        done.push((view.name(), to));
    }
    Ok(done)
}

/// Catches every view up, then checks each against a rebuild aside.
pub async fn check_all(store: &Store) -> Result<Vec<String>, ProjectionError> {
    catch_up_all(store).await?;
    let mut views = folders(store, Start::Fresh).await?;
    fold_all(store, &mut views, |_| 0, None, |v| Some(v.checkpoint())).await?;
    let mut diffs = Vec::new();
    for view in &views {
        let rebuilt: BTreeMap<String, String> = view.encoded().into_iter().collect();
        let live = view.stored();
        for (key, value) in &rebuilt {
            match live.get(key) {
                None => diffs.push(format!(
                    "{}: row `{key}` missing from the live view",
                    view.name()
                )),
                Some(v) if v != value => diffs.push(format!(
                    "{}: row `{key}` differs from the rebuild",
                    view.name()
                )),
                _ => {}
            }
        }
        for key in live.keys().filter(|k| !rebuilt.contains_key(*k)) {
            diffs.push(format!(
                "{}: row `{key}` is in the live view but not in the rebuild",
                view.name()
            ));
        }
    }
    Ok(diffs)
}

/// Catches every view up in one read of the log.
pub async fn catch_up_all(store: &Store) -> Result<(), ProjectionError> {
    loop {
        let mut views = folders(store, Start::Stored).await?;
        let to = fold_all(store, &mut views, |v| v.checkpoint(), None, |_| None).await?;
        let mut raced = false;
        for view in &views {
            if to <= view.checkpoint() {
                continue;
            }
            let change = diff(view.stored(), view.encoded());
            if !store
                .save_view(view.name(), view.checkpoint(), to, &change)
                .await?
            {
                raced = true;
            }
        }
        if !raced {
            return Ok(());
        }
    }
}
