-- View rows move into one partition per view, so that a rebuild empties a
-- view with TRUNCATE (no dead rows left behind, and the new rows are not
-- inserted beside the deleted ones they replace: DELETE and re-INSERT of the
-- same keys cost about three times as much as TRUNCATE and INSERT). The
-- store creates a view's partition the first time it rebuilds that view;
-- until then its rows live in the default partition.
--
-- Keys compare as bytes (COLLATE "C"), as they do on SQLite: cheaper index
-- comparisons, and the same order on both back ends.
ALTER TABLE view_rows RENAME TO view_rows_unpartitioned;
ALTER INDEX view_rows_pkey RENAME TO view_rows_unpartitioned_pkey;

CREATE TABLE view_rows
(
    view  text COLLATE "C" NOT NULL,
    key   text COLLATE "C" NOT NULL,
    value text             NOT NULL,
    PRIMARY KEY (view, key)
) PARTITION BY LIST (view);

CREATE TABLE view_rows_default PARTITION OF view_rows DEFAULT;

INSERT INTO view_rows (view, key, value)
SELECT view, key, value FROM view_rows_unpartitioned;

DROP TABLE view_rows_unpartitioned;
