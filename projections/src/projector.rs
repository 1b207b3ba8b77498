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

/// Rebuilds aside, up to the live checkpoint, and lists every difference
/// with the live rows (empty when they are equal byte for byte).
pub async fn check<P: Projection>(store: &Store) -> Result<Vec<String>, ProjectionError> {
    let live = store.load_view(P::NAME).await?;
    let mut rows = Rows::<P>::new();
    fold::<P>(store, &mut rows, 0, Some(live.checkpoint)).await?;
    let rebuilt = encode::<P>(&rows);
    let mut diffs = Vec::new();
    for (key, value) in &rebuilt {
        match live.rows.get(key) {
            None => diffs.push(format!(
                "{}: row `{key}` missing from the live view",
                P::NAME
            )),
            Some(live_value) if live_value != value => {
                diffs.push(format!("{}: row `{key}` differs from the rebuild", P::NAME))
            }
            _ => {}
        }
    }
    for key in live.rows.keys().filter(|k| !rebuilt.contains_key(*k)) {
        diffs.push(format!(
            "{}: row `{key}` is in the live view but not in the rebuild",
            P::NAME
        ));
    }
    Ok(diffs)
}

macro_rules! for_all {
    ($store:expr, $f:ident) => {{
        use crate::*;
        vec![
            (Archive::NAME, $f::<Archive>($store).await?),
            (RollbackHistory::NAME, $f::<RollbackHistory>($store).await?),
            (ReplayBuffer::NAME, $f::<ReplayBuffer>($store).await?),
            (ReasoningBank::NAME, $f::<ReasoningBank>($store).await?),
            (Runs::NAME, $f::<Runs>($store).await?),
        ]
    }};
}

/// Rebuilds every view; returns (view, checkpoint) pairs.
pub async fn rebuild_all(store: &Store) -> Result<Vec<(&'static str, u64)>, ProjectionError> {
    Ok(for_all!(store, rebuild))
}

/// Catches every view up, then checks each against a rebuild.
pub async fn check_all(store: &Store) -> Result<Vec<String>, ProjectionError> {
    catch_up_all(store).await?;
    Ok(for_all!(store, check)
        .into_iter()
        .flat_map(|(_, d)| d)
        .collect())
}

/// Catches every view up.
pub async fn catch_up_all(store: &Store) -> Result<(), ProjectionError> {
    use crate::*;
    catch_up::<Archive>(store).await?;
    catch_up::<RollbackHistory>(store).await?;
    catch_up::<ReplayBuffer>(store).await?;
    catch_up::<ReasoningBank>(store).await?;
    catch_up::<Runs>(store).await?;
    Ok(())
}
