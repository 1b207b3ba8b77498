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

fn encode<P: Projection>(rows: &Rows<P>) -> BTreeMap<String, String> {
    rows.iter()
        .map(|(k, v)| (k.clone(), serde_json::to_string(v).unwrap_or_default()))
        .collect()
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
        let encoded = encode::<P>(&rows);
        let mut change = ViewChange::default();
        for (key, value) in &encoded {
            if stored.rows.get(key) != Some(value) {
                change.upserts.push((key.clone(), value.clone()));
            }
        }
        change.deletes = stored
            .rows
            .keys()
            .filter(|k| !encoded.contains_key(*k))
            .cloned()
            .collect();
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

/// Clears the stored view and replays it from position 0.
pub async fn rebuild<P: Projection>(store: &Store) -> Result<u64, ProjectionError> {
    store.clear_view(P::NAME).await?;
    catch_up::<P>(store).await?;
    Ok(store.load_view(P::NAME).await?.checkpoint)
}

/// One view being folded alongside others, type-erased so that a single
/// read of the log can feed every projection.
trait Folding: Send {
    fn name(&self) -> &'static str;
    /// Events at or below this position are already in the view.
    fn checkpoint(&self) -> u64;
    fn apply(&mut self, event: &dgm_events::Recorded);
    /// The stored rows' change, and the encoded rows.
    fn change(&self) -> (ViewChange, BTreeMap<String, String>);
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
    fn change(&self) -> (ViewChange, BTreeMap<String, String>) {
        let encoded = encode::<P>(&self.rows);
        let mut change = ViewChange::default();
        for (key, value) in &encoded {
            if self.stored.rows.get(key) != Some(value) {
                change.upserts.push((key.clone(), value.clone()));
            }
        }
        change.deletes = self
            .stored
            .rows
            .keys()
            .filter(|k| !encoded.contains_key(*k))
            .cloned()
            .collect();
        (change, encoded)
    }
    fn stored(&self) -> &BTreeMap<String, String> {
        &self.stored.rows
    }
}

async fn folders(store: &Store, fresh: bool) -> Result<Vec<Box<dyn Folding>>, ProjectionError> {
    use crate::*;
    async fn one<P: Projection>(
        store: &Store,
        fresh: bool,
    ) -> Result<Box<dyn Folding>, ProjectionError> {
        Ok(Box::new(Folder::<P>::new(
            store.load_view(P::NAME).await?,
            fresh,
        )?))
    }
    Ok(vec![
        one::<Archive>(store, fresh).await?,
        one::<RollbackHistory>(store, fresh).await?,
        one::<ReplayBuffer>(store, fresh).await?,
        one::<ReasoningBank>(store, fresh).await?,
        one::<Runs>(store, fresh).await?,
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

/// Clears every view and replays the log into all of them in one pass.
pub async fn rebuild_all(store: &Store) -> Result<Vec<(&'static str, u64)>, ProjectionError> {
    for name in crate::ALL {
        store.clear_view(name).await?;
    }
    catch_up_all(store).await?;
    let mut done = Vec::new();
    for name in crate::ALL {
        done.push((*name, store.load_view(name).await?.checkpoint));
    }
    Ok(done)
}

/// Catches every view up, then checks each against a rebuild aside.
pub async fn check_all(store: &Store) -> Result<Vec<String>, ProjectionError> {
    catch_up_all(store).await?;
    let mut views = folders(store, true).await?;
    fold_all(store, &mut views, |_| 0, None, |v| Some(v.checkpoint())).await?;
    let mut diffs = Vec::new();
    for view in &views {
        let (_, rebuilt) = view.change();
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
        let mut views = folders(store, false).await?;
        let to = fold_all(store, &mut views, |v| v.checkpoint(), None, |_| None).await?;
        let mut raced = false;
        for view in &views {
            if to <= view.checkpoint() {
                continue;
            }
            let (change, _) = view.change();
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
