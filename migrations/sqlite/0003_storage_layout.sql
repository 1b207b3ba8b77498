-- Layouts that make appends and view writes touch fewer b-trees.
--
-- 1. The global position becomes the events table's rowid (INTEGER PRIMARY
--    KEY): SQLite numbers a row inserted without one max(position) + 1, under
--    its single write lock, so positions stay gapless and in commit order
--    with no trigger, the separate position index is gone, and reading by
--    position walks the table itself. (aggregate_type, aggregate_id,
--    sequence) stays unique, so a duplicate sequence is still the
--    optimistic-concurrency conflict.
CREATE TABLE events_by_position
(
  position       integer PRIMARY KEY,
  aggregate_type text                          NOT NULL,
  aggregate_id   text                          NOT NULL,
  sequence       integer CHECK (sequence >= 0) NOT NULL,
  event_type     text                          NOT NULL,
  event_version  text                          NOT NULL,
  payload        text                          NOT NULL,
  metadata       text                          NOT NULL,
  UNIQUE (aggregate_type, aggregate_id, sequence)
) STRICT;

INSERT INTO events_by_position
  (position, aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
SELECT position, aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata
  FROM events ORDER BY position;

-- Dropping a table drops its triggers first: no history is deleted here.
DROP TABLE events;
ALTER TABLE events_by_position RENAME TO events;

-- History is never rewritten.
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN
  SELECT RAISE(ABORT, 'the event log is append-only');
END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN
  SELECT RAISE(ABORT, 'the event log is append-only');
END;

-- 2. View rows are stored in their (view, key) order, WITHOUT ROWID: one
--    b-tree per write instead of a table plus its primary-key index.
CREATE TABLE view_rows_by_key
(
  view  text NOT NULL,
  key   text NOT NULL,
  value text NOT NULL,
  PRIMARY KEY (view, key)
) STRICT, WITHOUT ROWID;

INSERT INTO view_rows_by_key (view, key, value) SELECT view, key, value FROM view_rows;
DROP TABLE view_rows;
ALTER TABLE view_rows_by_key RENAME TO view_rows;
