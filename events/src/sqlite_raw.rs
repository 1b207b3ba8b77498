//! Direct SQLite calls for the log's bulk paths (reading pages of events,
//! writing many view rows).
//!
//! sqlx runs each SQLite connection on a worker thread and hands every
//! result row over a channel, copying each value on the way; reading tens of
//! thousands of events that way costs more than decoding them. sqlx lets a
//! caller lock a connection's handle out of its worker
//! ([`sqlx::sqlite::SqliteConnection::lock_handle`]) and call SQLite
//! directly; this module wraps the few calls we need so that the rest of the
//! crate stays safe code: a statement borrows the locked handle, text
//! borrowed from a row cannot outlive the next step, and every failure is a
//! [`StoreError`].

use std::ffi::{CStr, c_char, c_int};
use std::marker::PhantomData;
use std::ptr::NonNull;

use libsqlite3_sys as ffi;
use sqlx::sqlite::LockedSqliteHandle;

use crate::store::StoreError;

/// One prepared statement on a locked connection, finalized on drop.
pub(crate) struct Statement<'h> {
    stmt: NonNull<ffi::sqlite3_stmt>,
    db: NonNull<ffi::sqlite3>,
    /// The handle stays locked (out of sqlx's worker) while this lives.
    handle: PhantomData<&'h mut ()>,
}

// SAFETY (for the whole impl): `db` is the connection of a
// `LockedSqliteHandle` that this statement mutably borrows for `'h`, so sqlx's
// worker makes no call on it meanwhile; `stmt` was prepared on `db` and is
// finalized exactly once, in `drop`.
impl<'h> Statement<'h> {
    pub(crate) fn prepare(
        handle: &'h mut LockedSqliteHandle<'_>,
        sql: &str,
    ) -> Result<Self, StoreError> {
        let db = handle.as_raw_handle();
        let len = c_int::try_from(sql.len())
            .map_err(|_| StoreError::Database("statement too long".into()))?;
        let mut stmt = std::ptr::null_mut();
        // SAFETY: `sql` is valid for `len` bytes (it need not be NUL-terminated).
        let rc = unsafe {
            ffi::sqlite3_prepare_v2(
                db.as_ptr(),
                sql.as_ptr().cast::<c_char>(),
                len,
                &mut stmt,
                std::ptr::null_mut(),
            )
        };
        if rc != ffi::SQLITE_OK {
            return Err(error(db));
        }
        let stmt = NonNull::new(stmt)
            .ok_or_else(|| StoreError::Database(format!("empty statement: {sql}")))?;
        Ok(Self {
            stmt,
            db,
            handle: PhantomData,
        })
    }

    /// Binds parameter `index` (from 1).
    pub(crate) fn bind_i64(&mut self, index: c_int, value: i64) -> Result<(), StoreError> {
        // SAFETY: see the impl.
        let rc = unsafe { ffi::sqlite3_bind_int64(self.stmt.as_ptr(), index, value) };
        self.check(rc)
    }

    /// Binds parameter `index` (from 1) to a copy of `value`.
    pub(crate) fn bind_text(&mut self, index: c_int, value: &str) -> Result<(), StoreError> {
        let len = c_int::try_from(value.len())
            .map_err(|_| StoreError::Database("value too long".into()))?;
        // SAFETY: see the impl; SQLITE_TRANSIENT makes SQLite copy `value`
        // before this call returns.
        let rc = unsafe {
            ffi::sqlite3_bind_text(
                self.stmt.as_ptr(),
                index,
                value.as_ptr().cast::<c_char>(),
                len,
                ffi::SQLITE_TRANSIENT(),
            )
        };
        self.check(rc)
    }

    /// Binds parameter `index` (from 1) to a copy of `value` as a blob.
    pub(crate) fn bind_blob(&mut self, index: c_int, value: &[u8]) -> Result<(), StoreError> {
        let len = c_int::try_from(value.len())
            .map_err(|_| StoreError::Database("value too long".into()))?;
        // SAFETY: see the impl; SQLITE_TRANSIENT makes SQLite copy `value`
        // before this call returns.
        let rc = unsafe {
            ffi::sqlite3_bind_blob(
                self.stmt.as_ptr(),
                index,
                value.as_ptr().cast(),
                len,
                ffi::SQLITE_TRANSIENT(),
            )
        };
        self.check(rc)
    }

    /// Runs the statement once with `texts` bound to the parameters from
    /// `first` on, read in place rather than copied (a statement that
    /// returns no row: an INSERT), and resets it.
    pub(crate) fn execute_with(&mut self, first: c_int, texts: &[&str]) -> Result<(), StoreError> {
        let mut bound = 0;
        let mut result = Ok(());
        for text in texts {
            let len = match c_int::try_from(text.len()) {
                Ok(len) => len,
                Err(_) => {
                    result = Err(StoreError::Database("value too long".into()));
                    break;
                }
            };
            // SAFETY: see the impl. With SQLITE_STATIC, SQLite reads `text`
            // in place until the parameter is bound to something else; every
            // parameter bound here is bound to NULL below, before this
            // function returns and so before the borrow of `texts` ends.
            let rc = unsafe {
                ffi::sqlite3_bind_text(
                    self.stmt.as_ptr(),
                    first + bound,
                    text.as_ptr().cast::<c_char>(),
                    len,
                    ffi::SQLITE_STATIC(),
                )
            };
            bound += 1;
            result = self.check(rc);
            if result.is_err() {
                break;
            }
        }
        if result.is_ok() {
            result = self.step().map(|_| ());
        }
        let reset = self.reset();
        for index in first..first + bound {
            // SAFETY: see the impl; binding NULL needs no memory of ours.
            let rc = unsafe { ffi::sqlite3_bind_null(self.stmt.as_ptr(), index) };
            if rc != ffi::SQLITE_OK && result.is_ok() {
                result = Err(error(self.db));
            }
        }
        result.and(reset)
    }

    /// Runs the statement to its next row: true with a row, false when done.
    pub(crate) fn step(&mut self) -> Result<bool, StoreError> {
        // SAFETY: see the impl.
        match unsafe { ffi::sqlite3_step(self.stmt.as_ptr()) } {
            ffi::SQLITE_ROW => Ok(true),
            ffi::SQLITE_DONE => Ok(false),
            _ => Err(error(self.db)),
        }
    }

    /// Makes the statement ready to run again (bindings are kept).
    pub(crate) fn reset(&mut self) -> Result<(), StoreError> {
        // SAFETY: see the impl.
        let rc = unsafe { ffi::sqlite3_reset(self.stmt.as_ptr()) };
        self.check(rc)
    }

    /// Column `index` (from 0) of the current row as an integer.
    pub(crate) fn column_i64(&self, index: c_int) -> i64 {
        // SAFETY: see the impl; any index or type yields a value.
        unsafe { ffi::sqlite3_column_int64(self.stmt.as_ptr(), index) }
    }

    /// Column `index` (from 0) of the current row as text, borrowed until
    /// the next step.
    pub(crate) fn column_str(&self, index: c_int) -> Result<&str, StoreError> {
        // SAFETY: see the impl. SQLite keeps the text valid until the
        // statement steps, resets or is finalized, all of which need
        // `&mut self`, so the borrow cannot outlive it; `sqlite3_column_bytes`
        // after `sqlite3_column_text` is the order SQLite documents.
        let bytes = unsafe {
            let text = ffi::sqlite3_column_text(self.stmt.as_ptr(), index);
            if text.is_null() {
                return Err(StoreError::Database(format!(
                    "column {index} is NULL where text was expected"
                )));
            }
            let len = ffi::sqlite3_column_bytes(self.stmt.as_ptr(), index);
            std::slice::from_raw_parts(text, usize::try_from(len).unwrap_or(0))
        };
        std::str::from_utf8(bytes)
            .map_err(|e| StoreError::Database(format!("column {index} is not UTF-8: {e}")))
    }

    /// SQLite's extended result code for the last failure on this
    /// statement's connection (read it right after the failing call).
    pub(crate) fn error_code(&self) -> c_int {
        // SAFETY: see the impl.
        unsafe { ffi::sqlite3_extended_errcode(self.db.as_ptr()) }
    }

    fn check(&self, rc: c_int) -> Result<(), StoreError> {
        if rc == ffi::SQLITE_OK {
            Ok(())
        } else {
            Err(error(self.db))
        }
    }
}

impl Drop for Statement<'_> {
    fn drop(&mut self) {
        // SAFETY: see the impl; finalized once, here.
        unsafe {
            ffi::sqlite3_finalize(self.stmt.as_ptr());
        }
    }
}

/// How [`write_now`] ended.
enum WriteNow<T> {
    /// Committed.
    Done(T),
    /// Another connection holds the write lock; nothing was written.
    Busy,
    /// The writes failed (SQLite's extended result code); rolled back.
    Refused(c_int, StoreError),
}

/// Runs `write` in a write transaction (`BEGIN IMMEDIATE` … `COMMIT`) on
/// this thread, without waiting for the write lock: [`write`] falls back
/// to waiting for it through sqlx, on its worker thread, on
/// [`WriteNow::Busy`]. Run here, a transaction costs one hand-over from sqlx's worker
/// (the handle) instead of one per statement, and no await happens inside
/// it, so it is never left open by a cancelled future.
fn write_now<T>(
    handle: &mut LockedSqliteHandle<'_>,
    write: impl FnOnce(&mut LockedSqliteHandle<'_>) -> Result<T, Refused>,
) -> Result<WriteNow<T>, StoreError> {
    let waits = {
        let mut pragma = Statement::prepare(handle, "PRAGMA busy_timeout")?;
        pragma.step()?;
        c_int::try_from(pragma.column_i64(0)).unwrap_or(c_int::MAX)
    };
    set_busy_timeout(handle, 0)?;
    let done = write_unwaiting(handle, write);
    set_busy_timeout(handle, waits)?;
    done
}

fn write_unwaiting<T>(
    handle: &mut LockedSqliteHandle<'_>,
    write: impl FnOnce(&mut LockedSqliteHandle<'_>) -> Result<T, Refused>,
) -> Result<WriteNow<T>, StoreError> {
    {
        let mut begin = Statement::prepare(handle, "BEGIN IMMEDIATE")?;
        if let Err(e) = begin.step() {
            return if is_busy(begin.error_code()) {
                Ok(WriteNow::Busy)
            } else {
                Err(e)
            };
        }
    }
    let done = match write(handle) {
        Ok(value) => {
            let mut commit = Statement::prepare(handle, "COMMIT")?;
            match commit.step() {
                Ok(_) => return Ok(WriteNow::Done(value)),
                Err(_) if is_busy(commit.error_code()) => Ok(WriteNow::Busy),
                Err(e) => Err(e),
            }
        }
        Err((code, _)) if is_busy(code) => Ok(WriteNow::Busy),
        Err((code, e)) => Ok(WriteNow::Refused(code, e)),
    };
    // Still in the transaction: leave the connection as it was lent.
    let mut rollback = Statement::prepare(handle, "ROLLBACK")?;
    let _ = rollback.step();
    done
}

/// What a write refused: SQLite's extended result code (0 when the failure
/// was not SQLite's) and the error.
pub(crate) type Refused = (c_int, StoreError);

/// Runs `write` in a write transaction on `conn`: on this thread without
/// waiting when the write lock is free ([`write_now`]), else — another
/// connection holds it — `BEGIN IMMEDIATE` through sqlx, which waits for
/// the lock on its worker thread, then `write` on this thread all the same,
/// then `COMMIT`. So every SQLite write of the log has one body, `write`,
/// whichever way it gets the lock. `Ok(Err(_))`: `write` refused (rolled
/// back); `Err(_)`: the transaction itself failed.
pub(crate) async fn write<T>(
    conn: &mut sqlx::SqliteConnection,
    write: impl Fn(&mut LockedSqliteHandle<'_>) -> Result<T, Refused>,
) -> Result<Result<T, Refused>, StoreError> {
    {
        let mut handle = conn.lock_handle().await?;
        match write_now(&mut handle, &write)? {
            WriteNow::Done(value) => return Ok(Ok(value)),
            WriteNow::Refused(code, e) => return Ok(Err((code, e))),
            WriteNow::Busy => {}
        }
    }
    let mut tx = sqlx::Connection::begin_with(conn, "BEGIN IMMEDIATE").await?;
    let written = {
        let mut handle = tx.lock_handle().await?;
        write(&mut handle)
    };
    // A refusal leaves `tx` uncommitted: dropping it rolls back.
    if written.is_ok() {
        tx.commit().await?;
    }
    Ok(written)
}

/// The rowid of the last row the locked connection inserted.
pub(crate) fn last_insert_rowid(handle: &mut LockedSqliteHandle<'_>) -> i64 {
    // SAFETY: the handle is locked out of sqlx's worker and live.
    unsafe { ffi::sqlite3_last_insert_rowid(handle.as_raw_handle().as_ptr()) }
}

/// Sets how long the locked connection waits for a lock before SQLITE_BUSY.
pub(crate) fn set_busy_timeout(
    handle: &mut LockedSqliteHandle<'_>,
    ms: c_int,
) -> Result<(), StoreError> {
    let db = handle.as_raw_handle();
    // SAFETY: the handle is locked out of sqlx's worker and live.
    let rc = unsafe { ffi::sqlite3_busy_timeout(db.as_ptr(), ms) };
    if rc == ffi::SQLITE_OK {
        Ok(())
    } else {
        Err(error(db))
    }
}

/// Whether an extended result code means "another connection holds the lock".
pub(crate) fn is_busy(code: c_int) -> bool {
    code & 0xff == ffi::SQLITE_BUSY
}

/// Whether an extended result code is a UNIQUE (or primary key) violation.
pub(crate) fn is_unique_violation(code: c_int) -> bool {
    code == ffi::SQLITE_CONSTRAINT_UNIQUE || code == ffi::SQLITE_CONSTRAINT_PRIMARYKEY
}

/// The connection's last error, as a [`StoreError`].
fn error(db: NonNull<ffi::sqlite3>) -> StoreError {
    // SAFETY: `db` is a live connection; SQLite returns a NUL-terminated
    // message (never NULL for a valid handle) that we copy at once.
    let message = unsafe {
        let text = ffi::sqlite3_errmsg(db.as_ptr());
        if text.is_null() {
            "unknown SQLite error".to_string()
        } else {
            CStr::from_ptr(text).to_string_lossy().into_owned()
        }
    };
    StoreError::Database(message)
}
