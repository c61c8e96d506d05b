"""The AIWorkload operator: Orion's own Kubernetes resource, reconciled through Orion's REST API.

``mapping`` and ``status`` are pure (spec → REST bodies, Orion's answers → status); ``reconcile``
and ``serving_steps`` do one step per pass; ``handlers`` registers them with kopf; ``run`` starts
it (``orion operator run``). kopf is imported only by ``handlers`` and ``run``
(``pip install "orion-ray[operator]"``). See docs/operator.md.
"""
