-- create GIN index idx_checklistresponse_answers_gin on app.checklistresponse(answers jsonb_ops) concurrently
SET ROLE "app_migrator";
CREATE INDEX CONCURRENTLY IF NOT EXISTS "idx_checklistresponse_answers_gin" ON "app"."checklistresponse" USING gin ("answers");
RESET ROLE;
