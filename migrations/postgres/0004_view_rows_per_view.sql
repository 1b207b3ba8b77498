-- View rows move into one partition per view, so that a rebuild can
-- replace a view's rows wholesale: it fills a new table and swaps it in for
-- the view's partition (see `events/src/views.rs`), instead of deleting the
-- old rows and inserting the same keys beside them, which cost about three
-- times as much and left the old rows behind as dead ones. The store
-- creates a view's partition the first time it rebuilds that view; until
-- then its rows live in the default partition.
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
