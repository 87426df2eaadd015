"""Tortoise models of the hinfelaar_fastapi service, one module per domain.

The modules are listed one by one in ``pgprov.app_schema.config.MODEL_MODULES`` (Aerich and Tortoise
discover models per module); this package re-exports nothing so no model is found twice.
"""
