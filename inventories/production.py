"""production: the split profile (migrator owns database and schema, least-privilege runtime).

The example host is reached over SSH and administered as the postgres OS user (peer
authentication through sudo); migrations reach the database through an SSH tunnel. Point it
elsewhere without editing: DB_TARGET=@local PGHOST=db.example PGUSER=admin ... for a managed
database reached directly. Role passwords: APP_MIGRATOR_PASSWORD, APP_RUNTIME_PASSWORD.
"""

import os

from inventories.common import admin_from_libpq, inventory_name, split_passwords, target

TARGET = target("db1.production.example.com")
REMOTE = TARGET != "@local"

data = {
    "pg_inventory": inventory_name(__file__),
    "pg_environment": "production",
    "pg_profile": "split",
    "pg_gin_opclass": "jsonb_path_ops" if "production" == "production" else "jsonb_ops",
    **split_passwords(),
}
if REMOTE and not os.environ.get("PGHOST"):
    # On the host: psql as the postgres OS user; the app and migrations use TCP on localhost.
    data.update(pg_admin_sudo_user="postgres", pg_admin_port=int(os.environ.get("PGPORT", 5432)))
    data.update(pg_app_host="127.0.0.1", pg_app_port=data["pg_admin_port"], pg_tunnel=True)
else:
    data.update(admin_from_libpq(None, 5432, None))
    data.update(pg_app_host=data["pg_admin_host"] or "127.0.0.1", pg_app_port=data["pg_admin_port"])
    data["pg_tunnel"] = REMOTE

hosts = [(TARGET, data)]
