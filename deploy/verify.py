"""Entry point for CI: the least-privilege audit of an environment (changes nothing).

    pgprov-verify inventories/production.py --format junit --output verify.xml

The console script ``pgprov-verify`` (and ``python -m pgprov.verify``) runs
``pgprov.audit.audit``'s CLI with honest exit codes: 0 clean, 1 drift, 2 error. An unexpected
failure is an error too (2, one line), never a traceback whose exit status 1 would read as
drift in CI.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from pgprov.audit.audit import main as audit_main
from pgprov.audit.report import exit_code


def main(argv: Sequence[str] | None = None) -> int:
    return exit_code("pgprov-verify", lambda: audit_main(argv))


if __name__ == "__main__":
    sys.exit(main())
