"""production: the split profile (migrator owns database and schema, least-privilege runtime).

An example SSH host administered as the postgres OS user through sudo, migrations through an
SSH tunnel; DB_TARGET=@local PGHOST=db.example PGUSER=admin ... points it at a managed
database instead. Role passwords: APP_MIGRATOR_PASSWORD, APP_RUNTIME_PASSWORD.
GIN operator class: the service's, declared once in inventories/common.py.
"""

from inventories.common import split_environment

hosts = split_environment(__file__, "production", "db1.production.example.com")
