-- The feature space each stored vector lives in (see src/encoders/mod.rs):
-- 'stab-v1' for the documents' v1 encoders and issuer profiles,
-- 'stab-v2-signature-h<H>' for the v2 signature pair. Only vectors of one space
-- are compared; a query that would compare two spaces is an error naming both.
-- NULL (rows written before this column, or by other tools) means "not
-- recorded": numeric rows of the v1 model ids are read as 'stab-v1', joint
-- rows are then not checked.

ALTER TABLE numeric_window_embeddings ADD COLUMN IF NOT EXISTS feature_space TEXT;
ALTER TABLE joint_embeddings ADD COLUMN IF NOT EXISTS feature_space TEXT;
