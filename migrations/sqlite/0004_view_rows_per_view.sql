-- Nothing changes on SQLite: PostgreSQL's version 4 gives each view a
-- partition of its own and byte-order keys; SQLite's keys already compare
-- as bytes and a rebuild's DELETE frees pages for its INSERTs. The version
-- exists so that both back ends count schema versions alike.
SELECT 1;
