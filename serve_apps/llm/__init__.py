"""The OpenAI-compatible LLM app: engines, the replica deployment, the router and its /v1 routes."""
