"""The deploy's steps: pure plan decisions joined with the catalog into pyinfra operations.

Roles to privileges, migrations, the GIN index.
"""
