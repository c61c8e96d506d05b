"""Model serving: deployment specs, the deployment manager, the traffic router and its routes.

Importing this package imports no Ray: the manager and the routes import it where they need it.
"""
