"""Entry deploy: spec -> roles, database, schema, privileges, search_path, hardening ->
migrations -> JSONB GIN index.

    pyinfra -y inventories/production.py deploy/provision.py   # apply
    pyinfra --dry inventories/production.py deploy/provision.py # plan: the exact SQL
"""

from deploy.environment import environment

environment()
