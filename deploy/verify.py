"""Entry point for CI: the least-privilege audit of an environment (changes nothing).

    python -m deploy.verify inventories/production.py --format junit --output verify.xml

The same as ``python -m deploy.audit`` (``make verify ENV=…``); exits 1 on any difference.
"""

import sys

from deploy.audit import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
