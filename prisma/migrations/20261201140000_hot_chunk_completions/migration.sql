-- A chunk's one update (its results) was in place for about one chunk in five: a single-row chunk is
-- ~400 bytes and grows by its results, so at fillfactor 80 a page's free fifth held the new versions
-- of only its first few chunks, and every other completion wrote a new entry into each of the
-- table's three indexes. Half a page free fits them all (the rows of big chunks are TOASTed, so
-- their pages hold few tuples either way).
ALTER TABLE "job_chunks" SET (fillfactor = 50);
