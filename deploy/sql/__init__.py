"""SQL text: the Jinja environment with its quoting filters, and the lock-retry discipline.

Every lock-taking statement goes through ``pgprov.sql.locks``.
"""
