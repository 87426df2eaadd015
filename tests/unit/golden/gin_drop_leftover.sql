-- drop leftover index idx_checklistresponse_answers_gin_new
SET ROLE "app_migrator";
DROP INDEX CONCURRENTLY IF EXISTS "app"."idx_checklistresponse_answers_gin_new";
RESET ROLE;
