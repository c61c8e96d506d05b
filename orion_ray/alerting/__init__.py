"""Alert routing (docs/alerting.md): the original design's alert table as Prometheus rules
(``rules.py``) and an Alertmanager configuration that routes them by severity (``alertmanager.py``).

Both are rendered from data here, so the shipped files under ``cluster_configs/monitoring/`` and
the variants the tests load (short ``for:``, local receivers) come from one source.
"""
