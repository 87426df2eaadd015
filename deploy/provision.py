"""Entry deploy: spec -> roles, database, schema, privileges, search_path, hardening ->
migrations -> JSONB GIN index.

    pyinfra -y inventories/production.py deploy/provision.py   # apply
    pyinfra --dry inventories/production.py deploy/provision.py # plan: the exact SQL
"""

import atexit
import gc

# pyinfra's CLI is a short-lived process that runs this file once per host. What it has
# built so far lives until the end, yet every full garbage collection walks it again, and so
# does Python's last one at exit, only to free memory the OS takes back anyway: together
# more than the catalog query of a converged run. Frozen objects are left out of
# collections; garbage made during the run is still collected until exit.
gc.freeze()
atexit.unregister(gc.freeze)  # registered once per process, whatever the number of hosts
atexit.register(gc.freeze)

from pgprov.steps.environment import environment  # noqa: E402 - after the freeze, on purpose

environment()
