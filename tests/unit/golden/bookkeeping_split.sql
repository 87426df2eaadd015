-- revoke every privilege of role app_runtime on app.aerich (the migrations' bookkeeping)
REVOKE ALL ON TABLE "app"."aerich" FROM "app_runtime";
REVOKE ALL ON SEQUENCE "app"."aerich_id_seq" FROM "app_runtime";
