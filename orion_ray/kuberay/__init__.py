"""Orion on Kubernetes through KubeRay: manifests checked against the CRDs (``manifests``), a small
client over ``CustomObjectsApi`` (``client``) and the Serve builder a RayService names
(``serve_entry``)."""
