-- dgm's event store takes the append lock and numbers its rows itself; the
-- trigger (one PL/pgSQL call per row) now runs only for rows inserted
-- without a position, which it still serializes and numbers.
DROP TRIGGER events_assign_position ON events;

CREATE TRIGGER events_assign_position BEFORE INSERT ON events
    FOR EACH ROW WHEN (NEW.position IS NULL) EXECUTE FUNCTION dgm_assign_position();
