"""The Postgres pooler: sans-IO wire framing, the pool, and the binding a worker sees.

Nothing here is imported by ``from tcpworkers import connect``; the runtime loads it when a
``[bindings.NAME] type = "postgres"`` is configured.
"""
