"""Capacity for the cluster: providers that launch nodes (EC2, KubeRay) and the logic that retries
launches over time. The autoscaler control loop itself (demand → policy → providers, node drain)
is issue 6; what it will call is here."""
