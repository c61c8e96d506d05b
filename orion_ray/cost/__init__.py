"""Cost, chargeback and budgets (issue 18 item 4, docs/cost.md): pure computations over a price table
and usage records. Nothing here imports ray, boto3 or fastapi; the store reader and the API route
feed these functions and render what they return."""
