"""dev: a developer's PostgreSQL on localhost:5432, set up like the service README's local
section — one app user (single_user profile) that owns the database and schema, with CREATEDB.

    APP_DB_PASSWORD=... PGUSER=<admin> PGPASSWORD=... make deploy ENV=dev
"""

import os

from inventories.common import admin_from_libpq, inventory_name, target

hosts = [
    (
        target("@local"),
        {
            "pg_inventory": inventory_name(__file__),
            "pg_environment": "dev",
            "pg_profile": "single_user",
            "pg_createdb": True,
            "pg_schema_mode": os.environ.get("PGPROV_SCHEMA_MODE", "migrate"),
            "pg_app_user_password": "env:APP_DB_PASSWORD",
            "pg_app_host": os.environ.get("PGHOST", "localhost"),
            "pg_app_port": int(os.environ.get("PGPORT", 5432)),
            **admin_from_libpq("localhost", 5432, None),
        },
    )
]
