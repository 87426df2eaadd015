-- rebuild GIN index idx_checklistresponse_answers_gin on app.checklistresponse(answers jsonb_path_ops) concurrently and swap it in: it has another definition (CREATE INDEX idx_checklistresponse_answers_gin ON app.checklistresponse USING gin (answers))
SET ROLE "app_migrator";
DROP INDEX CONCURRENTLY IF EXISTS "app"."idx_checklistresponse_answers_gin_new";
CREATE INDEX CONCURRENTLY "idx_checklistresponse_answers_gin_new" ON "app"."checklistresponse" USING gin ("answers" "jsonb_path_ops");
DROP INDEX CONCURRENTLY "app"."idx_checklistresponse_answers_gin";
ALTER INDEX "app"."idx_checklistresponse_answers_gin_new" RENAME TO "idx_checklistresponse_answers_gin";
RESET ROLE;
