"""The Jinja SQL templates (``*.sql.j2``), shipped as package data so that an installed pgprov
(the pytest plugin in a service's test suite, say) renders the same SQL as a checkout."""
