-- The event log (the table cqrs-es' sqlite-es reads and writes) plus a global
-- position. sqlite-es inserts without it; the trigger fills it from the
-- current maximum, so positions are gapless and, SQLite having one writer at a
-- time, in commit order.
CREATE TABLE events
(
  aggregate_type text                          NOT NULL,
  aggregate_id   text                          NOT NULL,
  sequence       integer CHECK (sequence >= 0) NOT NULL,
  event_type     text                          NOT NULL,
  event_version  text                          NOT NULL,
  payload        text                          NOT NULL,
  metadata       text                          NOT NULL,
  position       integer,
  PRIMARY KEY (aggregate_type, aggregate_id, sequence)
) STRICT;

CREATE UNIQUE INDEX events_position ON events (position);

CREATE TRIGGER events_assign_position AFTER INSERT ON events
BEGIN
  UPDATE events
     SET position = (SELECT IFNULL(MAX(position), 0) + 1 FROM events)
   WHERE rowid = NEW.rowid;
END;

-- History is never rewritten.
CREATE TRIGGER events_no_update BEFORE UPDATE OF aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata ON events
BEGIN
  SELECT RAISE(ABORT, 'the event log is append-only');
END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN
  SELECT RAISE(ABORT, 'the event log is append-only');
END;

-- Unused (we never snapshot) but sqlite-es expects the table to exist.
CREATE TABLE snapshots
(
  aggregate_type   text    NOT NULL,
  aggregate_id     text    NOT NULL,
  last_sequence    integer NOT NULL,
  current_snapshot integer NOT NULL,
  payload          text    NOT NULL,
  PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
) STRICT;

-- Content-addressed blobs: code trees, files, long outputs.
CREATE TABLE blobs
(
  hash text    PRIMARY KEY,
  size integer NOT NULL,
  data blob    NOT NULL
) STRICT;

-- Projections: one row per view key, and the position each view has folded.
CREATE TABLE view_rows
(
  view  text NOT NULL,
  key   text NOT NULL,
  value text NOT NULL,
  PRIMARY KEY (view, key)
) STRICT;

CREATE TABLE view_checkpoints
(
  view     text    PRIMARY KEY,
  position integer NOT NULL
) STRICT;
