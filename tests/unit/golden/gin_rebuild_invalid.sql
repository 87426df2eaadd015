-- rebuild GIN index idx_checklistresponse_answers_gin on app.checklistresponse(answers jsonb_ops) concurrently and swap it in: it is INVALID
SET ROLE "hinfelaar_fastapi_db_user";
CREATE INDEX CONCURRENTLY "idx_checklistresponse_answers_gin_new" ON "app"."checklistresponse" USING gin ("answers");
DROP INDEX CONCURRENTLY "app"."idx_checklistresponse_answers_gin";
ALTER INDEX "app"."idx_checklistresponse_answers_gin_new" RENAME TO "idx_checklistresponse_answers_gin";
RESET ROLE;
