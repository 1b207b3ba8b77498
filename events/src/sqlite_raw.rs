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
