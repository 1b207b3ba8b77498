//! Reading the global log in position order.
//!
//! A page is fetched as text ([`RawPage`]: owned, so that it can be handed
//! to another thread) and decoded into [`Recorded`] events separately — on
//! several threads when it is large. [`Store::read`] does both; a reader that
//! folds the whole log (a rebuild) fetches the next page while the previous
//! one is decoded.

use sqlx::Row;

use crate::event::Event;
use crate::metadata::Metadata;
use crate::sqlite_raw::Statement;
use crate::store::{Db, Recorded, Store, StoreError};
use crate::upcast::upcast;

/// Events of the log as stored, not yet decoded: their text fields back to
/// back in one string.
#[derive(Debug, Default)]
pub struct RawPage {
    text: String,
    rows: Vec<RawFields>,
}

#[derive(Debug)]
struct RawFields {
    position: i64,
    sequence: i64,
    /// Byte ranges in `text` of aggregate_type, aggregate_id, event_type,
    /// event_version, payload and metadata.
    fields: [(usize, usize); 6],
}

impl RawPage {
    /// How many events the page holds.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The position of the page's last event.
    pub fn last_position(&self) -> Option<u64> {
        self.rows.last().map(|row| row.position as u64)
    }

    /// Appends one event; `fields` as in [`RawFields::fields`].
    fn push(&mut self, position: i64, sequence: i64, fields: [&str; 6]) {
        let fields = fields.map(|field| {
            let start = self.text.len();
            self.text.push_str(field);
            (start, self.text.len())
        });
        self.rows.push(RawFields {
            position,
            sequence,
            fields,
        });
    }

    fn row(&self, row: &RawFields) -> RawRow<'_> {
        let [
            aggregate_type,
            aggregate_id,
            event_type,
            event_version,
            payload,
            metadata,
        ] = row.fields.map(|(start, end)| &self.text[start..end]);
        RawRow {
            position: row.position,
            aggregate_type,
            aggregate_id,
            sequence: row.sequence,
            event_type,
            event_version,
            payload,
            metadata,
        }
    }

    /// [`RawPage::decode`] on the calling thread only: for a caller that
    /// decodes each page while the next one is read (the projector), where
    /// more threads would only take the cores from the reader and the
    /// database — and start and stop with every page.
    pub fn decode_on_this_thread(&self) -> Result<Vec<Recorded>, StoreError> {
        let rows: Vec<RawRow<'_>> = self.rows.iter().map(|row| self.row(row)).collect();
        decode_in_order(&rows)
    }

    /// The events, decoded and lifted to their current versions, in order:
    /// on several threads when there are many (decoding is most of the work
    /// of reading the whole log).
    pub fn decode(&self) -> Result<Vec<Recorded>, StoreError> {
        const ROWS_PER_THREAD: usize = 1_000;
        const MAX_THREADS: usize = 4;
        let rows: Vec<RawRow<'_>> = self.rows.iter().map(|row| self.row(row)).collect();
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(MAX_THREADS)
            .min(rows.len() / ROWS_PER_THREAD);
        if threads < 2 {
            return decode_in_order(&rows);
        }
        let part = rows.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let others = rows
                .chunks(part)
                .skip(1)
                .map(|rows| {
                    std::thread::Builder::new()
                        .name("dgm-decode".into())
                        .spawn_scoped(scope, move || decode_in_order(rows))
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| StoreError::Database(format!("cannot start a thread: {e}")))?;
            let mut decoded = decode_in_order(&rows[..part])?;
            for other in others {
                let part = other
                    .join()
                    .map_err(|_| StoreError::Database("decoding events panicked".into()))??;
                decoded.extend(part);
            }
            Ok(decoded)
        })
    }
}

impl Store {
    /// Events with `after < position <= up_to`, in position order, at most `limit`.
    pub async fn read(
        &self,
        after: u64,
        up_to: Option<u64>,
        limit: u32,
    ) -> Result<Vec<Recorded>, StoreError> {
        self.read_raw(after, up_to, limit).await?.decode()
    }

    /// What [`Store::read`] reads, not yet decoded.
    pub async fn read_raw(
        &self,
        after: u64,
        up_to: Option<u64>,
        limit: u32,
    ) -> Result<RawPage, StoreError> {
        let up_to = up_to.unwrap_or(i64::MAX as u64).min(i64::MAX as u64) as i64;
        let mut page = RawPage::default();
        match &self.db {
            Db::Sqlite(pool) => {
                // Directly, not row by row through sqlx: see `sqlite_raw`.
                let mut conn = pool.acquire().await?;
                let mut handle = conn.lock_handle().await?;
                let mut select = Statement::prepare(
                    &mut handle,
                    "SELECT position, aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata
                       FROM events WHERE position > ? AND position <= ? ORDER BY position LIMIT ?",
                )?;
                select.bind_i64(1, after as i64)?;
                select.bind_i64(2, up_to)?;
                select.bind_i64(3, i64::from(limit))?;
                while select.step()? {
                    let mut fields = [""; 6];
                    for (field, column) in fields.iter_mut().zip([1, 2, 4, 5, 6, 7]) {
                        *field = select.column_str(column)?;
                    }
                    page.push(select.column_i64(0), select.column_i64(3), fields);
                }
            }
            Db::Postgres(pool) => {
                let found = sqlx::query(
                    "SELECT position, aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata
                       FROM events WHERE position > $1 AND position <= $2 ORDER BY position LIMIT $3",
                )
                .bind(after as i64)
                .bind(up_to)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?;
                for row in &found {
                    // The values' bytes as sent: text, and the json columns'
                    // text too (binary json is its text, so neither a cast on
                    // the server nor a type check per value here).
                    let mut fields = [""; 6];
                    for (field, column) in fields.iter_mut().zip([1, 2, 4, 5, 6, 7]) {
                        *field = row
                            .try_get_raw(column)?
                            .as_str()
                            .map_err(|e| StoreError::Database(format!("reading the log: {e}")))?;
                    }
                    page.push(row.try_get(0)?, row.try_get(3)?, fields);
                }
            }
        }
        Ok(page)
    }

    /// Every event up to `up_to`, paged.
    pub async fn read_all(&self, up_to: Option<u64>) -> Result<Vec<Recorded>, StoreError> {
        let mut out = Vec::new();
        let mut after = 0;
        loop {
            let page = self.read(after, up_to, 10_000).await?;
            let Some(last) = page.last() else { break };
            after = last.position;
            out.extend(page);
        }
        Ok(out)
    }
}

/// One stored event, its text fields borrowed from a [`RawPage`] (or from
/// the commit that wrote it: the store's tail decodes what it commits the
/// way a read decodes it, with this).
pub(crate) struct RawRow<'a> {
    pub(crate) position: i64,
    pub(crate) aggregate_type: &'a str,
    pub(crate) aggregate_id: &'a str,
    pub(crate) sequence: i64,
    pub(crate) event_type: &'a str,
    pub(crate) event_version: &'a str,
    pub(crate) payload: &'a str,
    pub(crate) metadata: &'a str,
}

impl RawRow<'_> {
    /// Decodes the row; `previous` is the row before it, whose metadata (the
    /// same for every event of a commit) is reused when the text is equal.
    fn decode(&self, previous: Option<(&str, &Recorded)>) -> Result<Recorded, StoreError> {
        let position = self.position as u64;
        let corrupt = |message: String| StoreError::Corrupt { position, message };
        let event = decode_event(
            self.position,
            self.event_type,
            self.event_version,
            self.payload,
        )?;
        let metadata = match previous {
            Some((text, recorded)) if text == self.metadata => recorded.metadata.clone(),
            _ => Metadata::decode(self.metadata).map_err(corrupt)?,
        };
        Ok(Recorded {
            position,
            aggregate_type: self.aggregate_type.to_string(),
            aggregate_id: self.aggregate_id.to_string(),
            sequence: self.sequence as u64,
            event,
            metadata,
        })
    }
}

/// Decodes `rows`, in order, decoding each run of equal metadata once.
pub(crate) fn decode_in_order(rows: &[RawRow<'_>]) -> Result<Vec<Recorded>, StoreError> {
    let mut decoded: Vec<Recorded> = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let previous = i
            .checked_sub(1)
            .and_then(|p| Some((rows[p].metadata, decoded.last()?)));
        decoded.push(row.decode(previous)?);
    }
    Ok(decoded)
}

/// The event stored at `position`, lifted to the current version.
pub(crate) fn decode_event(
    position: i64,
    event_type: &str,
    event_version: &str,
    payload: &str,
) -> Result<Event, StoreError> {
    let corrupt = |message: String| StoreError::Corrupt {
        position: position as u64,
        message,
    };
    let current = Event::current_version(event_type) == Some(event_version);
    // Fast path: a current-version payload decodes straight into the enum.
    let direct = if current {
        serde_json::from_str::<Event>(payload).ok()
    } else {
        None
    };
    let event = match direct {
        Some(event) => event,
        None => {
            let payload: serde_json::Value = serde_json::from_str(payload)
                .map_err(|e| corrupt(format!("payload is not JSON: {e}")))?;
            let payload =
                upcast(event_type, event_version, payload).map_err(|e| corrupt(e.to_string()))?;
            serde_json::from_value(payload)
                .map_err(|e| corrupt(format!("{event_type} payload does not match: {e}")))?
        }
    };
    if event.event_type() != event_type {
        return Err(corrupt(format!(
            "stored as {event_type} but the payload is {}",
            event.event_type()
        )));
    }
    Ok(event)
}
