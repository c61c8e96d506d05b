"""``orion cost report|export``: cost reports and the monthly chargeback from the command line.

orion cost report [--window 7d | --month 2026-11] [--aggregate tenant,pool] [--step 1d]
                  [--share-idle none|weighted|even] [--tenant T] [--format table|json|csv]
orion cost export --month 2026-11 --to chargeback-2026-11.csv [--share-idle ...] [--tenant T]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional


class CostCalls:
    """The cost routes over an API session (``ApiSession``: auth, retries, error mapping)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def report(self, **params: Any) -> Any:
        """``GET /api/v1/costs`` (a dict, or CSV text with ``format='csv'``)."""
        r = self.client._request("GET", "/api/v1/costs", params=_params(params))
        return r.text if params.get("format") == "csv" else r.json()

    def chargeback(self, **params: Any) -> str:
        """``GET /api/v1/costs/chargeback`` as CSV text."""
        return self.client._request("GET", "/api/v1/costs/chargeback", params=_params(params)).text


def _params(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


def _calls() -> CostCalls:
    from ..client import OrionClient

    return CostCalls(OrionClient())


def _table(body: dict) -> None:
    keys = body["aggregate"]
    head = (["start"] if body.get("step_s") else []) + keys
    cols = ["gpu_hours", "cpu_hours", "usage_cost", "idle_cost", "cost", "tokens"]
    print("  ".join(f"{h.upper():<20}" for h in head) + "  " + "  ".join(f"{c.upper():>12}" for c in cols))
    for r in body["rows"]:
        print(
            "  ".join(f"{str(r.get(h) or '-'):<20}" for h in head)
            + "  "
            + "  ".join(f"{r[c]:>12}" for c in cols)
        )
    t = body["totals"]
    share = body.get("spot_share")
    print(
        f"total {t['cost']} {body['currency']} (usage {t['usage_cost']}, idle {t['idle_cost']}), "
        f"{t['gpu_hours']} GPU-hours, spot share of batch GPU-hours "
        f"{'-' if share is None else f'{share:.0%}'}, prices {body['price_version']}"
    )


def cmd_report(args: Any, calls: Optional[CostCalls] = None) -> int:
    """``orion cost report``."""
    calls = calls or _calls()
    fmt = "csv" if args.format == "csv" else "json"
    got = calls.report(
        window=None if args.month else args.window,
        month=args.month,
        aggregate=args.aggregate,
        step=args.step,
        share_idle=args.share_idle,
        tenant=args.tenant,
        format=fmt,
    )
    if args.format == "csv":
        print(got, end="")
    elif args.format == "json":
        print(json.dumps(got, indent=2))
    else:
        _table(got)
    return 0


def cmd_export(args: Any, calls: Optional[CostCalls] = None) -> int:
    """``orion cost export``: the month's chargeback CSV written to ``--to``."""
    calls = calls or _calls()
    text = calls.chargeback(month=args.month, share_idle=args.share_idle, tenant=args.tenant, format="csv")
    Path(args.to).write_text(text)
    lines = max(0, len(text.splitlines()) - 1)
    print(f"wrote {lines} tenant row(s) for {args.month} to {args.to}")
    return 0


def add_commands(sub: Any) -> None:
    """Add ``orion cost …`` to the ``orion`` parser."""
    c = sub.add_parser("cost", help="cost reports and the monthly chargeback export")
    csub = c.add_subparsers(dest="cost_command", required=True)
    r = csub.add_parser("report", help="cost and usage over a window, grouped and bucketed")
    r.add_argument("--window", default="7d", help="e.g. 24h, 7d, 2w (default 7d)")
    r.add_argument("--month", help="a calendar month instead of a window, e.g. 2026-11")
    r.add_argument("--aggregate", default="tenant", help="comma list of tenant,pool,market,kind,gpu_type")
    r.add_argument("--step", help="bucket size, e.g. 1d or 1h (default: one bucket)")
    r.add_argument("--share-idle", choices=["none", "weighted", "even"], help="default: the configured one")
    r.add_argument("--tenant", help="one tenant (admin key)")
    r.add_argument("--format", choices=["table", "json", "csv"], default="table")
    r.set_defaults(fn=cmd_report)
    e = csub.add_parser("export", help="the monthly chargeback per tenant as CSV")
    e.add_argument("--month", required=True, help="e.g. 2026-11")
    e.add_argument("--to", required=True, help="the CSV file to write")
    e.add_argument("--share-idle", choices=["none", "weighted", "even"])
    e.add_argument("--tenant", help="one tenant (admin key)")
    e.set_defaults(fn=cmd_export)
