-- The event log (the table cqrs-es' postgres-es reads and writes) plus a
-- global position. postgres-es inserts without it; the trigger takes a
-- transaction-scoped advisory lock, held until commit, and assigns
-- max(position) + 1 under it. So appends are serialized, positions are in
-- commit order (a reader tailing by position never skips an event) and
-- gapless (a rolled-back append leaves no hole, unlike a sequence).
CREATE TABLE events
(
    aggregate_type text                         NOT NULL,
    aggregate_id   text                         NOT NULL,
    sequence       bigint CHECK (sequence >= 0) NOT NULL,
    event_type     text                         NOT NULL,
    event_version  text                         NOT NULL,
    payload        json                         NOT NULL,
    metadata       json                         NOT NULL,
    position       bigint                       NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);

CREATE UNIQUE INDEX events_position ON events (position);

CREATE FUNCTION dgm_assign_position() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7064236001);
    NEW.position := (SELECT COALESCE(MAX(position), 0) + 1 FROM events);
    RETURN NEW;
END
$$;

CREATE TRIGGER events_assign_position BEFORE INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION dgm_assign_position();

CREATE FUNCTION dgm_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the event log is append-only';
END
$$;

CREATE TRIGGER events_no_update BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION dgm_append_only();

-- Unused (we never snapshot) but postgres-es expects the table to exist.
CREATE TABLE snapshots
(
    aggregate_type   text   NOT NULL,
    aggregate_id     text   NOT NULL,
    last_sequence    bigint NOT NULL,
    current_snapshot bigint NOT NULL,
    payload          json   NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
);

CREATE TABLE blobs
(
    hash text   PRIMARY KEY,
    size bigint NOT NULL,
    data bytea  NOT NULL
);

CREATE TABLE view_rows
(
    view  text NOT NULL,
    key   text NOT NULL,
    value text NOT NULL,
    PRIMARY KEY (view, key)
);

CREATE TABLE view_checkpoints
(
    view     text   PRIMARY KEY,
    position bigint NOT NULL
);
