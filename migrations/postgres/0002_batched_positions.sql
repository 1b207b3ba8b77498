-- dgm's own repository takes the advisory lock and assigns positions itself
-- in one multi-row insert; the trigger still serializes and numbers any
-- insert that comes without a position.
CREATE OR REPLACE FUNCTION dgm_assign_position() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7064236001);
    IF NEW.position IS NULL THEN
        NEW.position := (SELECT COALESCE(MAX(position), 0) + 1 FROM events);
    END IF;
    RETURN NEW;
END
$$;
