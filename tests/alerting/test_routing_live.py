"""The original's alerts, end to end through a real Prometheus and Alertmanager (docs/alerting.md):
a critical alert pages PagerDuty and posts to Slack (and silences the high alert of its family), a
medium one is mailed, a low one reaches the webhook, and resolved notifications follow."""

from __future__ import annotations

from tests.alerting.stack import ROUTING_KEY, WEBHOOK_TOKEN, Stack, wait_for


def _alertnames(posts: list, key) -> set[str]:
    return {key(body) for body, _ in posts}


def test_critical_pages_pagerduty_and_posts_to_slack(stack: Stack):
    stack.scraped.failing = True  # 5xx and slow requests: the error rate (critical) and p95 (high)
    try:
        page = wait_for(
            "a PagerDuty event",
            lambda: [
                b for b, _ in stack.received.posts("/pagerduty") if "OrionApiErrorRateCritical" in str(b)
            ],
        )[0]
        assert page["event_action"] == "trigger"
        assert page["routing_key"] == ROUTING_KEY  # read from its file, never in the config
        assert page["payload"]["severity"] == "critical"
        slack = wait_for(
            "a Slack post",
            lambda: [
                b
                for b, _ in stack.received.posts("/slack")
                if "OrionApiErrorRateCritical" in b["attachments"][0]["title"]
            ],
        )[0]
        assert slack["channel"] == "#test" and slack["attachments"][0]["title"].startswith("[FIRING]")

        # the high latency alert of the same family is held back while the critical one fires
        def inhibited():
            alerts = {a["labels"]["alertname"]: a for a in stack.am_alerts()}
            high = alerts.get("OrionApiLatencyP95High")
            return high if high and high["status"]["inhibitedBy"] else None

        high = wait_for("the p95 alert to be inhibited", inhibited)
        assert high["status"]["state"] == "suppressed" and high["labels"]["severity"] == "high"
        titles = [b["attachments"][0]["title"] for b, _ in stack.received.posts("/slack")]
        assert not any("OrionApiLatencyP95High" in t for t in titles)
        # and a critical alert is neither mailed nor sent to the webhook
        assert not any("OrionApiErrorRateCritical" in str(m) for m in stack.received.mails)
        assert not any("OrionApiErrorRateCritical" in str(b) for b, _ in stack.received.posts("/webhook"))
    finally:
        stack.scraped.failing = False


def test_medium_is_mailed_then_resolved(stack: Stack):
    stack.scraped.metrics.set_queue_depth({("a", "normal"): 700, ("b", "low"): 600})

    def mail(state: str):
        return [
            m
            for m in stack.received.mails
            if state in m["Subject"] and "OrionQueueBacklogHigh" in m["Subject"]
        ]

    fired = wait_for("the backlog mail", lambda: mail("FIRING"))[0]
    assert fired["To"] == "oncall@test.invalid" and "medium" in fired["Subject"]
    stack.scraped.metrics.set_queue_depth({("a", "normal"): 3})
    wait_for("the backlog's resolved mail", lambda: mail("RESOLVED"))
    # a medium alert pages no one
    assert not any("OrionQueueBacklogHigh" in str(b) for b, _ in stack.received.posts("/pagerduty"))


def test_low_reaches_the_webhook_then_resolves(stack: Stack):
    stack.scraped.cost_ratio = {"a": 2.0, "b": 1.1}

    def hooks(status: str):
        return [
            (b, h)
            for b, h in stack.received.posts("/webhook")
            if b["status"] == status and b["commonLabels"].get("alertname") == "OrionCostAnomaly"
        ]

    body, headers = wait_for("the cost webhook", lambda: hooks("firing"))[0]
    assert headers.get("Authorization") == f"Bearer {WEBHOOK_TOKEN}"  # the token from its file
    assert [a["labels"]["tenant"] for a in body["alerts"]] == ["a"]
    assert body["commonLabels"]["severity"] == "low"
    stack.scraped.cost_ratio = {"a": 1.0, "b": 1.1}
    resolved, _ = wait_for("the cost webhook's resolution", lambda: hooks("resolved"))[0]
    assert resolved["alerts"][0]["status"] == "resolved"
