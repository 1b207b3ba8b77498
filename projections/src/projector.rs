//! Catch-up, as-of, rebuild and check for any [`Projection`].
//!
//! Every fold reads the log page by page ([`replay`]): when there is more
//! than one page, a worker thread decodes and folds each page while this
//! task reads the next. A rebuild stores an insert-only view (the replay
//! buffer) while it folds: its new rows go to a thread that encodes them
//! every 1,000 events, and this task writes them between reads
//! ([`Streaming`]). The other views are stored once the fold is done (on
//! PostgreSQL all at once, while the streamed view's last rows go in), their
//! rows encoded on worker threads while the store writes the rows encoded
//! before ([`Encoding`]).

use std::collections::{BTreeMap, VecDeque};

use dgm_events::views::{RowBatch, RowChunks, ViewChange, ViewRows, ViewSnapshot};
use dgm_events::{RawPage, Recorded, Store, StoreError};
use tokio::sync::{mpsc, oneshot};

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
    #[error("cannot start a thread to fold the log: {0}")]
    Thread(std::io::Error),
}

/// Events per read of the log. The fold of the last page is left to do once
/// the log is read: 5,000 cost less CPU and time per rebuild than 10,000
/// (README, performance), with twice the queries.
const PAGE: u32 = 5_000;

/// Rows per chunk handed to the store by a rebuild.
const CHUNK: usize = 1_000;

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

/// One row as stored: JSON.
fn encode_row<R: serde::Serialize>(row: &R) -> String {
    serde_json::to_string(row).unwrap_or_default()
}

/// The rows as stored: JSON, in key order. Many rows are encoded on several
/// threads.
fn encode<P: Projection>(rows: &Rows<P>) -> Vec<(String, String)> {
    const ROWS_PER_THREAD: usize = 2_000;
    const MAX_THREADS: usize = 4;
    fn encode_part<R: serde::Serialize>(rows: &[(&String, &R)]) -> Vec<(String, String)> {
        rows.iter()
            .map(|(k, v)| ((*k).clone(), encode_row(v)))
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

/// A rebuilt view's rows, consumed as they are encoded, and the position
/// they reflect.
struct Encoding {
    parts: Parts,
    checkpoint: u64,
}

enum Parts {
    /// Few rows: encoded at once.
    Ready(std::vec::IntoIter<RowBatch>),
    /// Consecutive parts of the view, each encoded by a thread of its own
    /// that sends its chunks (in key order) and then `None`.
    Threads(VecDeque<mpsc::UnboundedReceiver<Option<RowBatch>>>),
}

impl RowChunks for Encoding {
    async fn next_chunk(&mut self) -> Result<ViewRows, StoreError> {
        let chunk = match &mut self.parts {
            Parts::Ready(chunks) => chunks.next(),
            Parts::Threads(parts) => loop {
                let Some(part) = parts.front_mut() else {
                    break None;
                };
                match part.recv().await {
                    Some(Some(chunk)) => break Some(chunk),
                    Some(None) => {
                        parts.pop_front();
                    }
                    None => return Err(encoder_stopped()),
                }
            },
        };
        Ok(match chunk {
            Some(chunk) => ViewRows::Chunk(chunk),
            None => ViewRows::End {
                checkpoint: self.checkpoint,
            },
        })
    }
}

fn encoder_stopped() -> StoreError {
    StoreError::Database("a thread encoding view rows stopped before its last row".into())
}

/// Encodes rows into chunks of [`CHUNK`], dropping each row once encoded.
struct Encoder {
    chunk: RowBatch,
    /// Each row's JSON, before it is copied into `chunk`.
    scratch: Vec<u8>,
}

impl Encoder {
    fn new() -> Self {
        Self {
            chunk: RowBatch::with_capacity(CHUNK, 0),
            scratch: Vec::with_capacity(1024),
        }
    }

    /// Encodes `rows`, handing each full chunk to `send`; false when `send`
    /// refused one.
    fn encode<R: serde::Serialize>(
        &mut self,
        rows: impl Iterator<Item = (String, R)>,
        mut send: impl FnMut(RowBatch) -> bool,
    ) -> bool {
        for (key, row) in rows {
            self.scratch.clear();
            // As `encode_row`: what cannot be encoded is stored empty.
            let value = match serde_json::to_writer(&mut self.scratch, &row) {
                Ok(()) => std::str::from_utf8(&self.scratch).unwrap_or_default(),
                Err(_) => "",
            };
            self.chunk.push(&key, value);
            if self.chunk.len() == CHUNK {
                let next = RowBatch::with_capacity(CHUNK, self.chunk.bytes());
                if !send(std::mem::replace(&mut self.chunk, next)) {
                    return false;
                }
            }
        }
        true
    }

    /// The last rows, if any.
    fn finish(self) -> Option<RowBatch> {
        (!self.chunk.is_empty()).then_some(self.chunk)
    }
}

/// Encodes `rows` chunk by chunk, dropping each row once encoded: many rows
/// on several threads, one per consecutive part of the keys.
fn encode_into_chunks<P: Projection>(
    mut rows: Rows<P>,
    checkpoint: u64,
) -> Result<Encoding, ProjectionError> {
    const MAX_THREADS: usize = 4;
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_THREADS)
        .min(rows.len() / CHUNK);
    if threads < 2 {
        let mut chunks = Vec::new();
        let mut encoder = Encoder::new();
        encoder.encode(rows.into_iter(), |full| {
            chunks.push(full);
            true
        });
        chunks.extend(encoder.finish());
        return Ok(Encoding {
            parts: Parts::Ready(chunks.into_iter()),
            checkpoint,
        });
    }
    // Split at the first key of each part after the first, from the last.
    let per_part = rows.len().div_ceil(threads);
    let splits: Vec<String> = rows.keys().step_by(per_part).skip(1).cloned().collect();
    let mut parts: Vec<Rows<P>> = splits.iter().rev().map(|k| rows.split_off(k)).collect();
    parts.push(rows);
    parts.reverse();
    let mut receivers = VecDeque::new();
    for part in parts {
        let (sender, receiver) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("dgm-encode".into())
            .spawn(move || {
                let mut encoder = Encoder::new();
                // A send fails only when the writer gave up: stop then.
                if encoder.encode(part.into_iter(), |full| sender.send(Some(full)).is_ok())
                    && encoder
                        .finish()
                        .is_none_or(|last| sender.send(Some(last)).is_ok())
                {
                    let _ = sender.send(None);
                }
            })
            .map_err(ProjectionError::Thread)?;
        receivers.push_back(receiver);
    }
    Ok(Encoding {
        parts: Parts::Threads(receivers),
        checkpoint,
    })
}

/// From the fold of an insert-only view to the thread encoding its rows.
type Batch<P> = Result<Rows<P>, String>;

/// From the thread encoding an insert-only view's rows to its writer.
enum Streamed {
    Chunk(RowBatch),
    /// Every row the fold handed over is in a chunk before this.
    Done,
    Failed(String),
}

/// The rows of an insert-only view, encoded by a thread of their own as the
/// fold hands them over, page by page; the checkpoint comes once the whole
/// fold is done.
struct Streaming {
    chunks: mpsc::UnboundedReceiver<Streamed>,
    checkpoint: Option<oneshot::Receiver<u64>>,
}

impl RowChunks for Streaming {
    async fn next_chunk(&mut self) -> Result<ViewRows, StoreError> {
        match self.chunks.recv().await {
            Some(Streamed::Chunk(chunk)) => Ok(ViewRows::Chunk(chunk)),
            Some(Streamed::Failed(message)) => Err(StoreError::Database(message)),
            Some(Streamed::Done) => match self.checkpoint.take() {
                Some(checkpoint) => checkpoint
                    .await
                    .map(|checkpoint| ViewRows::End { checkpoint })
                    .map_err(|_| {
                        StoreError::Database("the fold stopped before the end of the log".into())
                    }),
                None => Err(encoder_stopped()),
            },
            None => Err(encoder_stopped()),
        }
    }
}

/// Starts the thread that encodes the batches of rows an insert-only view's
/// fold sends, for `Streaming` to hand to the store.
fn stream<P: Projection>(
    checkpoint: oneshot::Receiver<u64>,
) -> Result<(std::sync::mpsc::Sender<Batch<P>>, Streaming), ProjectionError> {
    let (batches, received) = std::sync::mpsc::channel::<Batch<P>>();
    let (sender, chunks) = mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name("dgm-encode".into())
        .spawn(move || {
            let mut encoder = Encoder::new();
            let send = |full| sender.send(Streamed::Chunk(full)).is_ok();
            // Until the fold drops its sender (or the writer gives up).
            while let Ok(batch) = received.recv() {
                match batch {
                    Ok(rows) => {
                        if !encoder.encode(rows.into_iter(), send) {
                            return;
                        }
                    }
                    Err(message) => {
                        let _ = sender.send(Streamed::Failed(message));
                        return;
                    }
                }
            }
            if encoder.finish().is_none_or(send) {
                let _ = sender.send(Streamed::Done);
            }
        })
        .map_err(ProjectionError::Thread)?;
    Ok((
        batches,
        Streaming {
            chunks,
            checkpoint: Some(checkpoint),
        },
    ))
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

/// Reads the events `after < position <= up_to` page by page and hands each
/// page's events, in order, to `fold`; returns `state` and the last position
/// read (`after` when there was none).
///
/// A page shorter than asked for is the end. When the first page is not,
/// a worker thread decodes (by itself: it waits for pages anyway) and folds
/// each page while this task reads the next one.
async fn replay<S, F>(
    store: &Store,
    after: u64,
    up_to: Option<u64>,
    mut state: S,
    mut fold: F,
) -> Result<(S, u64), ProjectionError>
where
    S: Send + 'static,
    F: FnMut(&mut S, Vec<Recorded>) + Send + 'static,
{
    let mut page = store.read_raw(after, up_to, PAGE).await?;
    let Some(mut last) = page.last_position() else {
        return Ok((state, after));
    };
    if page.len() < PAGE as usize {
        fold(&mut state, page.decode()?);
        return Ok((state, last));
    }
    let (pages, mut received) = mpsc::channel::<RawPage>(1);
    let (done, result) = oneshot::channel();
    let worker = std::thread::Builder::new()
        .name("dgm-replay".into())
        .spawn(move || {
            let mut outcome = Ok(());
            while let Some(page) = received.blocking_recv() {
                match page.decode_on_this_thread() {
                    Ok(events) => fold(&mut state, events),
                    Err(e) => {
                        outcome = Err(e);
                        break;
                    }
                }
            }
            // Nobody waits for the result if the reader failed first.
            let _ = done.send((state, outcome));
        })
        .map_err(ProjectionError::Thread)?;
    loop {
        let full = page.len() >= PAGE as usize;
        if pages.send(page).await.is_err() || !full {
            // Not sent: the worker stopped at an error, which it reports.
            break;
        }
        page = store.read_raw(last, up_to, PAGE).await?;
        match page.last_position() {
            Some(position) => last = position,
            None => break,
        }
    }
    drop(pages);
    match result.await {
        Ok((state, Ok(()))) => Ok((state, last)),
        Ok((_, Err(e))) => Err(e.into()),
        // The worker died without a result: a fold panicked. Panic here as
        // the same fold would have on this task (the thread has ended, so
        // joining it does not wait).
        Err(_) => match worker.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => Err(ProjectionError::Thread(std::io::Error::other(
                "the thread folding the log ended without a result",
            ))),
        },
    }
}

/// Folds events `after < position <= up_to` into `rows`; returns the last position seen.
async fn fold<P: Projection>(
    store: &Store,
    rows: Rows<P>,
    after: u64,
    up_to: Option<u64>,
) -> Result<(Rows<P>, u64), ProjectionError> {
    replay(store, after, up_to, rows, |rows, events| {
        for event in events {
            P::apply_owned(rows, event);
        }
    })
    .await
}

/// Brings the stored view up to the head of the log and returns its rows.
pub async fn catch_up<P: Projection>(store: &Store) -> Result<Rows<P>, ProjectionError> {
    loop {
        let stored = store.load_view(P::NAME).await?;
        let rows = decode::<P>(&stored.rows)?;
        let (rows, to) = fold::<P>(store, rows, stored.checkpoint, None).await?;
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
    Ok(fold::<P>(store, Rows::<P>::new(), 0, Some(position))
        .await?
        .0)
}

/// Replays the view from position 0 and replaces the stored one with it.
pub async fn rebuild<P: Projection>(store: &Store) -> Result<u64, ProjectionError> {
    let view: Box<dyn Folding> = Box::new(Folder::<P>::new(ViewSnapshot::default(), true)?);
    rebuild_views(store, vec![view]).await
}

/// One view being folded alongside others, type-erased so that a single
/// read of the log can feed every projection.
trait Folding: Send {
    fn name(&self) -> &'static str;
    /// Events at or below this position are already in the view.
    fn checkpoint(&self) -> u64;
    fn apply(&mut self, event: &Recorded);
    /// [`Folding::apply`], handed the event itself (no other view needs it).
    fn apply_owned(&mut self, event: Recorded);
    /// A batch of events is folded: a streaming view hands its new rows to
    /// its encoder (see [`Folding::stream`]).
    fn hand_over(&mut self);
    /// See [`Projection::INSERT_ONLY`].
    fn insert_only(&self) -> bool;
    /// From now on, hands the rows of each batch to a thread that encodes
    /// them for the returned [`Streaming`] (which ends with `checkpoint`),
    /// until [`Folding::end_stream`].
    fn stream(&mut self, checkpoint: oneshot::Receiver<u64>) -> Result<Streaming, ProjectionError>;
    fn end_stream(&mut self);
    /// The folded rows as stored: JSON, in key order.
    fn encoded(&self) -> Vec<(String, String)>;
    /// The folded rows as stored, encoded while they are written.
    fn into_chunks(self: Box<Self>, checkpoint: u64) -> Result<Encoding, ProjectionError>;
    fn stored(&self) -> &BTreeMap<String, String>;
}

struct Folder<P: Projection> {
    stored: ViewSnapshot,
    rows: Rows<P>,
    /// Where the rows of each batch go while streaming, and the last key sent.
    stream: Option<(std::sync::mpsc::Sender<Batch<P>>, Option<String>)>,
}

impl<P: Projection> Folder<P> {
    /// Starts from the stored view, or from nothing (`fresh`).
    fn new(stored: ViewSnapshot, fresh: bool) -> Result<Self, ProjectionError> {
        let rows = if fresh {
            Rows::<P>::new()
        } else {
            decode::<P>(&stored.rows)?
        };
        Ok(Self {
            stored,
            rows,
            stream: None,
        })
    }
}

impl<P: Projection> Folding for Folder<P> {
    fn name(&self) -> &'static str {
        P::NAME
    }
    fn checkpoint(&self) -> u64 {
        self.stored.checkpoint
    }
    fn apply(&mut self, event: &Recorded) {
        P::apply(&mut self.rows, event);
    }
    fn apply_owned(&mut self, event: Recorded) {
        P::apply_owned(&mut self.rows, event);
    }
    fn hand_over(&mut self) {
        let Some((batches, last)) = &mut self.stream else {
            return;
        };
        let (Some(first), Some(next_last)) =
            (self.rows.keys().next(), self.rows.keys().next_back())
        else {
            return;
        };
        let batch = match last.as_ref() {
            Some(last) if first <= last => Err(format!(
                "view `{}` is not insert-only: row `{first}` came after row `{last}`",
                P::NAME
            )),
            _ => {
                *last = Some(next_last.clone());
                Ok(std::mem::take(&mut self.rows))
            }
        };
        let failed = batch.is_err();
        // Not sent: the writer gave up (and says why); stop sending.
        if batches.send(batch).is_err() || failed {
            self.stream = None;
        }
    }
    fn insert_only(&self) -> bool {
        P::INSERT_ONLY
    }
    fn stream(&mut self, checkpoint: oneshot::Receiver<u64>) -> Result<Streaming, ProjectionError> {
        let (batches, streaming) = stream::<P>(checkpoint)?;
        self.stream = Some((batches, None));
        Ok(streaming)
    }
    fn end_stream(&mut self) {
        self.stream = None;
    }
    fn encoded(&self) -> Vec<(String, String)> {
        encode::<P>(&self.rows)
    }
    fn into_chunks(self: Box<Self>, checkpoint: u64) -> Result<Encoding, ProjectionError> {
        encode_into_chunks::<P>(self.rows, checkpoint)
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

/// Every view, in [`crate::ALL`] order but for the replay buffer, which
/// goes last: the last view to fold an event is handed the event itself, and
/// the replay buffer keeps most of what it is handed.
async fn folders(store: &Store, start: Start) -> Result<Vec<Box<dyn Folding>>, ProjectionError> {
    use crate::*;
    async fn one<P: Projection>(
        store: &Store,
        start: Start,
    ) -> Result<Box<dyn Folding>, ProjectionError> {
        let stored = match start {
            Start::Empty => ViewSnapshot::default(),
            Start::Stored | Start::Fresh => store.load_view(P::NAME).await?,
        };
        Ok(Box::new(Folder::<P>::new(stored, start != Start::Stored)?))
    }
    Ok(vec![
        one::<Archive>(store, start).await?,
        one::<RollbackHistory>(store, start).await?,
        one::<ReasoningBank>(store, start).await?,
        one::<Runs>(store, start).await?,
        one::<ReplayBuffer>(store, start).await?,
    ])
}

/// Views folding together, each from its own start up to its own bound.
struct Views {
    views: Vec<Box<dyn Folding>>,
    starts: Vec<u64>,
    bounds: Vec<Option<u64>>,
}

impl Views {
    fn wants(&self, view: usize, position: u64) -> bool {
        position > self.starts[view] && self.bounds[view].is_none_or(|b| position <= b)
    }

    /// Folds each event of a page into every view that wants it; the last
    /// of them is handed the event itself. Streaming views hand their rows
    /// over every [`CHUNK`] events, not once a page: what is left to encode
    /// when the fold ends is then a chunk, not a page.
    fn fold(&mut self, events: Vec<Recorded>) {
        for (i, event) in events.into_iter().enumerate() {
            if i > 0 && i % CHUNK == 0 {
                for view in &mut self.views {
                    view.hand_over();
                }
            }
            let position = event.position;
            let Some(last) = (0..self.views.len())
                .rev()
                .find(|&view| self.wants(view, position))
            else {
                continue;
            };
            for view in 0..last {
                if self.wants(view, position) {
                    self.views[view].apply(&event);
                }
            }
            self.views[last].apply_owned(event);
        }
        for view in &mut self.views {
            view.hand_over();
        }
    }
}

/// Reads the log once from the lowest start, feeding each view only the
/// events after its start and, where it has one, up to its bound.
async fn fold_all(
    store: &Store,
    views: Vec<Box<dyn Folding>>,
    start: impl Fn(&dyn Folding) -> u64,
    up_to: Option<u64>,
    bound: impl Fn(&dyn Folding) -> Option<u64>,
) -> Result<(Vec<Box<dyn Folding>>, u64), ProjectionError> {
    let starts: Vec<u64> = views.iter().map(|v| start(v.as_ref())).collect();
    let bounds: Vec<Option<u64>> = views.iter().map(|v| bound(v.as_ref())).collect();
    let after = starts.iter().copied().min().unwrap_or(0);
    let views = Views {
        views,
        starts,
        bounds,
    };
    let (views, to) = replay(store, after, up_to, views, Views::fold).await?;
    Ok((views.views, to))
}

/// Replays the log from position 0 into `views` (all empty) and replaces
/// each stored view with the result, each in a transaction of its own;
/// returns the position they now reflect.
///
/// The first insert-only view is stored during the fold: its transaction
/// starts first and writes the rows of each batch of events, encoded on a
/// thread of their own, between this task's reads of the log; it commits
/// once the fold is done. Where the store writes several views at a time
/// (PostgreSQL), the others are stored all at once as soon as the fold is
/// done, while that view's last rows are written; elsewhere one after
/// another, after it.
async fn rebuild_views(
    store: &Store,
    mut views: Vec<Box<dyn Folding>>,
) -> Result<u64, ProjectionError> {
    async fn replace(
        store: &Store,
        view: Box<dyn Folding>,
        to: u64,
    ) -> Result<(), ProjectionError> {
        store
            .replace_view(view.name(), &mut view.into_chunks(to)?)
            .await?;
        Ok(())
    }
    let (reached, checkpoint) = oneshot::channel();
    let streamed = views.iter().position(|view| view.insert_only());
    let mut streaming = match streamed {
        Some(view) => Some((views[view].name(), views[view].stream(checkpoint)?)),
        None => None,
    };
    let fold = async {
        let (mut views, to) = fold_all(store, views, |_| 0, None, |_| None).await?;
        if let Some(view) = streamed {
            views.remove(view).end_stream();
        }
        // Dropped unsent on an error: the streamed view rolls back.
        let _ = reached.send(to);
        if store.writes_views_concurrently() {
            let others = views.into_iter().map(|view| replace(store, view, to));
            futures::future::try_join_all(others).await?;
            return Ok::<_, ProjectionError>((Vec::new(), to));
        }
        Ok((views, to))
    };
    let (left, to) = match &mut streaming {
        Some((name, rows)) => {
            let (folded, written) = tokio::join!(fold, store.replace_view(name, rows));
            // The fold's error first: the writer's follows from it.
            let folded = folded?;
            written?;
            folded
        }
        None => fold.await?,
    };
    for view in left {
        replace(store, view, to).await?;
    }
    Ok(to)
}

/// Replays the log into every view in one pass and replaces each stored
/// view with the result (never reading the old rows). Returns the views in
/// [`crate::ALL`] order, each with the position it now reflects.
pub async fn rebuild_all(store: &Store) -> Result<Vec<(&'static str, u64)>, ProjectionError> {
    let to = rebuild_views(store, folders(store, Start::Empty).await?).await?;
    Ok(crate::ALL.iter().map(|name| (*name, to)).collect())
}

/// Catches every view up, then checks each against a rebuild aside.
pub async fn check_all(store: &Store) -> Result<Vec<String>, ProjectionError> {
    catch_up_all(store).await?;
    let views = folders(store, Start::Fresh).await?;
    let (mut views, _) = fold_all(store, views, |_| 0, None, |v| Some(v.checkpoint())).await?;
    views.sort_by_key(|view| crate::ALL.iter().position(|n| *n == view.name()));
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
        let views = folders(store, Start::Stored).await?;
        let (views, to) = fold_all(store, views, |v| v.checkpoint(), None, |_| None).await?;
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
