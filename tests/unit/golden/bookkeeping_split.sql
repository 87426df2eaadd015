REVOKE ALL ON TABLE "app"."aerich" FROM "app_runtime";
REVOKE ALL ON SEQUENCE "app"."aerich_id_seq" FROM "app_runtime";
