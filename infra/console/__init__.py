"""The console: a web UI over the same APIs the CLI reads (``driftline console``).

Modules: ``app`` (routes), ``pages`` (handlers), ``security`` (token, CSRF, headers), ``server``
(uvicorn, the local stack's process), one reader per page (``overview``, ``drift_reader``,
``alarms_reader``, ``models_reader``, ``lake_reader``, ``predict``), ``templates/``, ``static/``.
"""
