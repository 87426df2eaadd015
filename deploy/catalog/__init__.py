"""The live catalog and the way to it.

The snapshot query's typed state, the pyinfra fact, psql, tunnels, the ``@db`` connector.
"""
