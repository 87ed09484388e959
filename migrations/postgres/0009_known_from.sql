-- Point-in-time search (#26): the first date on which a scenario could have
-- been known. scenarios.known_from is the optional override a scenarios CSV
-- may give; joint_embeddings.known_from is the date stored with every STAB
-- scenario vector by the scenario backfills (the override, else for a
-- historical window the last trading day its path covers on the market's
-- calendar, else the scenario date). NULL on vectors written before this
-- migration: a point-in-time search admits them only once they are
-- backfilled again. Both are read by filtered searches and by the partition
-- build, which stores them per row.

ALTER TABLE scenarios ADD COLUMN known_from DATE;
ALTER TABLE joint_embeddings ADD COLUMN known_from DATE;
