-- The feature space each stored vector lives in (see src/encoders/mod.rs):
-- 'stab-v1' for the documents' v1 encoders and issuer profiles,
-- 'stab-v2-signature-h<H>' for the v2 signature pair. Only vectors of one space
-- are compared; a query that would compare two spaces is an error naming both.
-- Joint rows stabspace wrote before this column came from v1 encoders (or
-- are gen-scenarios' synthetic vectors, which belong to no space): they are
-- marked 'stab-v1' here. NULL otherwise (rows of other tools) means "not
-- recorded": numeric rows of the v1 model ids are read as 'stab-v1', joint
-- rows are not checked.

ALTER TABLE numeric_window_embeddings ADD COLUMN feature_space TEXT;
ALTER TABLE joint_embeddings ADD COLUMN feature_space TEXT;

UPDATE joint_embeddings SET feature_space = 'stab-v1'
 WHERE feature_space IS NULL
   AND joint_type IN ('STAB_FRAGILITY_V0', 'PROFILE_CORE_V0')
   AND COALESCE(json_extract(entity_scope, '$.source'), '') <> 'gen-scenarios';
