from tortoise import BaseDBAsyncClient

RUN_IN_TRANSACTION = True


async def upgrade(db: BaseDBAsyncClient) -> str:
    return """
        CREATE TABLE IF NOT EXISTS "user" (
    "id" SERIAL NOT NULL PRIMARY KEY,
    "email" VARCHAR(255) NOT NULL UNIQUE,
    "full_name" VARCHAR(200) NOT NULL,
    "is_active" BOOL NOT NULL,
    "created_at" TIMESTAMPTZ NOT NULL,
    "updated_at" TIMESTAMPTZ NOT NULL
);
COMMENT ON TABLE "user" IS 'Someone who fills in checklists and rates work orders.';
CREATE TABLE IF NOT EXISTS "workorder_rating" (
    "id" SERIAL NOT NULL PRIMARY KEY,
    "work_order_id" VARCHAR(64) NOT NULL,
    "rating" SMALLINT NOT NULL,
    "comment" TEXT,
    "created_at" TIMESTAMPTZ NOT NULL,
    "user_id" INT REFERENCES "user" ("id") ON DELETE SET NULL,
    CONSTRAINT "uid_workorder_r_work_or_7224ed" UNIQUE ("work_order_id", "user_id")
);
CREATE INDEX IF NOT EXISTS "idx_workorder_r_work_or_2ba36f" ON "workorder_rating" ("work_order_id");
COMMENT ON TABLE "workorder_rating" IS 'A user''s 1..5 score of one work order, with an optional comment.';
CREATE TABLE IF NOT EXISTS "unit" (
    "id" SERIAL NOT NULL PRIMARY KEY,
    "name" VARCHAR(50) NOT NULL UNIQUE,
    "symbol" VARCHAR(20) NOT NULL
);
COMMENT ON TABLE "unit" IS 'A unit of measure that numeric answers are given in, e.g. bar or degrees Celsius.';
CREATE TABLE IF NOT EXISTS "answertype" (
    "id" SERIAL NOT NULL PRIMARY KEY,
    "code" VARCHAR(30) NOT NULL UNIQUE,
    "name" VARCHAR(100) NOT NULL,
    "description" TEXT
);
COMMENT ON TABLE "answertype" IS 'How a question is answered: boolean, number, text, or a choice from a list.';
CREATE TABLE IF NOT EXISTS "checklist" (
    "id" SERIAL NOT NULL PRIMARY KEY,
    "name" VARCHAR(200) NOT NULL,
    "description" TEXT,
    "version" INT NOT NULL,
    "is_active" BOOL NOT NULL,
    "created_at" TIMESTAMPTZ NOT NULL,
    "updated_at" TIMESTAMPTZ NOT NULL,
    CONSTRAINT "uid_checklist_name_f1c5ab" UNIQUE ("name", "version")
);
COMMENT ON TABLE "checklist" IS 'A named, versioned list of questions to go through on a work order.';
CREATE TABLE IF NOT EXISTS "question" (
    "id" SERIAL NOT NULL PRIMARY KEY,
    "order" INT NOT NULL,
    "text" TEXT NOT NULL,
    "help_text" TEXT,
    "is_required" BOOL NOT NULL,
    "answer_type_id" INT NOT NULL REFERENCES "answertype" ("id") ON DELETE RESTRICT,
    "checklist_id" INT NOT NULL REFERENCES "checklist" ("id") ON DELETE CASCADE,
    "unit_id" INT REFERENCES "unit" ("id") ON DELETE SET NULL,
    CONSTRAINT "uid_question_checkli_3f356a" UNIQUE ("checklist_id", "order")
);
COMMENT ON TABLE "question" IS 'One question of a checklist, at a fixed position.';
CREATE TABLE IF NOT EXISTS "listoption" (
    "id" SERIAL NOT NULL PRIMARY KEY,
    "value" VARCHAR(100) NOT NULL,
    "label" VARCHAR(200) NOT NULL,
    "order" INT NOT NULL,
    "question_id" INT NOT NULL REFERENCES "question" ("id") ON DELETE CASCADE,
    CONSTRAINT "uid_listoption_questio_6fa8ea" UNIQUE ("question_id", "value")
);
COMMENT ON TABLE "listoption" IS 'One choice of a list question.';
CREATE TABLE IF NOT EXISTS "questiondependency" (
    "id" SERIAL NOT NULL PRIMARY KEY,
    "expected_value" VARCHAR(255) NOT NULL,
    "depends_on_id" INT NOT NULL REFERENCES "question" ("id") ON DELETE CASCADE,
    "question_id" INT NOT NULL REFERENCES "question" ("id") ON DELETE CASCADE,
    CONSTRAINT "uid_questiondep_questio_c41e00" UNIQUE ("question_id", "depends_on_id", "expected_value")
);
COMMENT ON TABLE "questiondependency" IS 'Show the question only when depends_on was answered with expected_value.';
CREATE TABLE IF NOT EXISTS "checklistresponse" (
    "id" SERIAL NOT NULL PRIMARY KEY,
    "work_order_id" VARCHAR(64),
    "answers" JSONB NOT NULL,
    "submitted_at" TIMESTAMPTZ,
    "created_at" TIMESTAMPTZ NOT NULL,
    "updated_at" TIMESTAMPTZ NOT NULL,
    "checklist_id" INT NOT NULL REFERENCES "checklist" ("id") ON DELETE RESTRICT,
    "user_id" INT REFERENCES "user" ("id") ON DELETE SET NULL
);
CREATE INDEX IF NOT EXISTS "idx_checklistre_work_or_64724d" ON "checklistresponse" ("work_order_id");
COMMENT ON TABLE "checklistresponse" IS 'A checklist filled in by a user for a work order; answers are keyed by question id.';
CREATE TABLE IF NOT EXISTS "aerich" (
    "id" SERIAL NOT NULL PRIMARY KEY,
    "version" VARCHAR(255) NOT NULL,
    "app" VARCHAR(100) NOT NULL,
    "content" JSONB NOT NULL
);"""


async def downgrade(db: BaseDBAsyncClient) -> str:
    # Hand-written: `aerich init-migrations` leaves this empty and `aerich migrate` orders
    # drops without regard to foreign keys (it drops "user" before "workorder_rating").
    # Referencing tables go first; no CASCADE, so a wrong order fails instead of silently
    # dropping constraints. The "aerich" table stays: Aerich deletes this version's row
    # from it right after running this SQL.
    return """
        DROP TABLE "checklistresponse";
        DROP TABLE "questiondependency";
        DROP TABLE "listoption";
        DROP TABLE "question";
        DROP TABLE "checklist";
        DROP TABLE "answertype";
        DROP TABLE "unit";
        DROP TABLE "workorder_rating";
        DROP TABLE "user";"""


MODELS_STATE = (
    "eJztXW1z2zYS/isYfblkRufxezpt52YUx2nc2lbPVi6dNh0OREISxiSgEGAUTev/flhQFN"
    "8l0pYsisU3C8SC4IOX3Wd3Af/V8bhDXHHwURC/8z36q8OwR9QfqfIu6uDpNC6FAomHrq4Y"
    "RDWGQvrYlqpshF1BVJFDhO3TqaScQc177hHOCJpNOBpR1xWIMmRPiP3gUiEFwsxBPpZEoB"
    "n3HxD3HeKLA2jb4bZqnLLx85oJGP0SEEvyMZET/b1//KmKKXPINyKin9MHa0SJ66TgoA40"
    "oMstOZ/qsism3+uK0MOhZXM38FhceTqXE86WtSmTUDomjEDvoHnpBwATC1x3gWaEXNjTuE"
    "rYxYSMQ0Y4cAFskA47EJd1LOu2P7DuLweW1ckNRCSRAHVRZHMGg6i6KvTXj6EL/z4+On1z"
    "+t3J+el3qoru5rLkzWP46hiYUFDDczvoPOrnWOKwhsY4BpV4mLp5XC8m2C8GdimQwVZ1Oo"
    "tthGRzwfXwN8slbCwngOjZ2Qoo/9e7u/jQu3ular2GV3K10MLVd7t4dBw+A7xjfEfqxZb+"
    "UQPjlNBmcI4KYqDjHeLlkT48rIL04WE50vAsjTQVltr66NcCpN9y7hLMSnaKpFwG7KES3B"
    "ba0UTfAtorwH3b719Dy54QX1xdcDXIgPzx5u3l3asjjb2qRCVJbiUx4LZPABILyzzi79QT"
    "ST1SDHlaMoO5sxA9iP7Yx+muPtDpM3e+GOcVAzK4urm8H/Rufk2Nyrve4BKeHOvSeab01X"
    "lmYSwbQZ+uBh8Q/ES/928vNbxcyLGv3xjXG/zegT7hQHKL8ZmFncTeG5VGqKVGPZg6Txz1"
    "tKQZ9aaMeoRRYth178EQGz0krAYoGGL7YYZ9x0o9iaeHGi4FkSjYgxeC73+5Iy7W0OZnwc"
    "Li/aSMxj7YjHe6tQpTYTFzmzITHqO5H5XGMyIBFRFTVYE8E6yLyOy+W7TXIrhgxvFjXjYH"
    "84+8Yy9bghke60+Cd8ObSiZZAfMqmIflJAyYjiY6lh/XXkvIegjI278EOjo4OEPC5j5BfI"
    "Q0uVpSpy6aUTlRrApxLYhdZHPPI0zmqdlzG/zMPrNPMWlDrrKMgN1hxoGwITEXknhdJDhS"
    "v+cIq/Z9MiI+YTZx0HAOxdRH5JskPjRMNRVUop+ZnKg3qhoYjVS36JihBzIvo4V/aEStEN"
    "KQzmme+6fhizvki7kxqcppcoLb4jW7I5DnpxVYzflpKamBR2kTO95J0jDfe9h1S+dyLLV+"
    "Pu+DWRVO6ZPjN+fL2Qw/Vk3k+5ve9XUBZQk3uTygA7VdlXCVWORJM7aZqrbQJr38bZAyR6"
    "OZ+eqm99vrlEl63b/9KaqemMkX1/23hiS2nC5UIomiRD+U7lkJiSdtWg1bZptQwzn+lcY3"
    "D+770Kj6hcw1xleqR1gZZeXUIYos7Be2ZWyhC5pvtjQEk1NKfbr6YBJ6stT70e3H6+vOYz"
    "mh3Sbx+Mio7BTFeaB8JcUIohpVaIWqC4a/R7AIlI2ubG+peuIRn9rKmBczMO7BeB8rA58p"
    "C7+LyMH4AA2xr0x/5BC1HRCBLlQfaFAQAtrKG0x0qFnWft3AxWZjFg2KDZ1VCViclccrzn"
    "LhCjH3hrxW5C2WaGVIqFJEaEVA6HWRyqzislRoCOj8M/1w/1000x6FulX3W08riEGIYU4X"
    "Jp6u1IihmpFRvbV68QOfIYyiEUdULBQVcb5HwzBK2AUdNgQfmVSksAuqCiN7wqlN0Mjnnv"
    "oF3ta8Rtxw20YXNksX2mr21dmuo/qt04UnVbbqk/Kt+iSnC3drZjRKDx5VSo04WpEacZRP"
    "jUj2LAdzuesrI2bcX9XcX3tihDRtHezEClkGT4uMkPjhShvETlWrQM3hNU4XfVX8WJURR+"
    "t8YNLLSYAkR2MIsPk8GE+QsiZwInpXRMY30mZhFC7abBdNm/jbP5iRN0pVbiWL0KjKXUWK"
    "ov2l+p6RkHi5QOdRozcOkw5r0mEbuG+3ONJp0mFbNuobTYc1tK7pqbB7g9c2afByfhWw4O"
    "TcKyfBX5K11nLgPiOxo1yRVBwfHuwiLCFBlCrskVq2FOrkGe+TWijktyn6rrmwobg7pbjh"
    "GFTHdVm/TdmOG+MBEGiqw2Sj+q1wGLw0h50Qd2rVRTwlZDwH9VFXlNUnXwLqk4LteB3ZTU"
    "oaulud7oaxbd1+vUzPvKDZt4vcCZFZUg/drJjBtgBbyFysmZ4cS5j05LXpySmT+pk5yqkg"
    "3J7N26qZytlFm0pXvujdX/TeXXbKdt8NYJzOtmopyHm9k4L57vJ+cHd1MejkdooNAByldu"
    "/XLlE50T7eHGsn2ido33QDjrJrtYj60za7yhwyJap7IPIspCK3zrtFe/a87YjZ9Ln+xXZj"
    "tk0HY2JdFrgY06u23MkIKpJP67kZF9m12kWoc2Iir2GxT3F19UIHYtL1+RW7aoyN/3CX/s"
    "NwDHK4lufILAVa4fN6gXxS9emk1tGVpUALEd5KGtIe+MAPG7095EOw9Qh/Rsq4Udaz/qQe"
    "fCZfamG8u5shTZkJVkz5d3NAucDMXREXThvD6yPETrr++itrJ3wGdwolwr3MnaPZhDAUti"
    "UsVTjD8Xmr8HYj8m1KbMiw0fq94BLbDTa81jCMG4Rf6RaMvbjbK3DTg1HDrMlLttG+2ca1"
    "uPFyqKeWc3JGMRuTx5g8LTJ5incJA3AVgHO7Y5Osynxy5qojd8kMzgpH7/xk9QpH8JaC+t"
    "8XKMOOLi6mhEuD4HbK1OG4H1LX2TyQeXjRZXzU3yk6kreVd5hbAZplPO74Psz1EcM2XYe5"
    "WCF5mH++79+uyjYSBQA71Jbob7TN1ILOj6OA2Xr5DgPqSsrEAbz2P53tKooiwAEiaLk88y"
    "6bZNdNH5uABrKZdyIYelQ+7fxLVnYDJ2CaGT/fwwMv+XNO5nRb+a63n+eczOm2f+Kol51u"
    "M6mnL5R6am7G3apHxqSebjD1tCQn0lw+vL+XD/fgdt5Jp+jKxfBJd+V1i3GddU6WckSNC6"
    "NZLozSi1dWZEyV3rxiIl4lES9YVDUQXlRvIbpbyUhTb5SF/9ij3DOUEHl5z9BuvA4b8wHV"
    "uAtj88rs8f9DNx1z"
)
