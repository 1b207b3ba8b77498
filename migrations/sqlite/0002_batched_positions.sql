-- dgm's own repository assigns positions itself, in the same statement as
-- the insert, under the write lock (BEGIN IMMEDIATE). The trigger now only
-- fills positions for rows inserted without one.
DROP TRIGGER events_assign_position;

CREATE TRIGGER events_assign_position AFTER INSERT ON events
WHEN NEW.position IS NULL
BEGIN
  UPDATE events
     SET position = (SELECT IFNULL(MAX(position), 0) + 1 FROM events)
   WHERE rowid = NEW.rowid;
END;
