"""An Alertmanager configuration that routes Orion's alerts by severity (docs/alerting.md).

critical → PagerDuty and Slack · high → Slack · medium → email · low → a webhook. The shipped
rules of ``alerts.yml`` (``warning``, ``info``) are routed as medium and low. A critical alert
inhibits the high, medium and low ones of the same ``family`` (a high one the medium and low), so
a failing API pages once instead of paging and posting its latency too.

Secrets are never written into the configuration: the PagerDuty routing key, the Slack webhook
URL, the SMTP password and the webhook's bearer token are files Alertmanager reads
(``routing_key_file``, ``api_url_file``, ``auth_password_file``, ``credentials_file``).
``write_secret_files`` fills those files from environment variables for an operator who keeps
secrets there. The settings model has no field for an inline secret, so one cannot slip in.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Optional

from pydantic import BaseModel, ConfigDict, Field

from .rules import to_yaml

DURATION = r"^(\d+(ms|s|m|h|d|w|y))+$"
# environment variable → the secret file name write_secret_files gives it
SECRET_ENV = {
    "ORION_PAGERDUTY_ROUTING_KEY": "pagerduty_routing_key",
    "ORION_SLACK_WEBHOOK_URL": "slack_webhook_url",
    "ORION_SMTP_PASSWORD": "smtp_password",
    "ORION_ALERT_WEBHOOK_TOKEN": "webhook_token",
}
DEFAULT_SECRETS_DIR = "/etc/alertmanager/secrets"


class PagerDuty(BaseModel):
    model_config = ConfigDict(extra="forbid")
    routing_key_file: str = Field(min_length=1, description="file holding the Events API v2 routing key")
    url: Optional[str] = Field(None, pattern=r"^https?://\S+$", description="default: PagerDuty's Events API")


class Slack(BaseModel):
    model_config = ConfigDict(extra="forbid")
    api_url_file: str = Field(min_length=1, description="file holding the incoming-webhook URL")
    channel: str = Field("#orion-alerts", min_length=1)


class Email(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to: str = Field(min_length=3, pattern=r"^[^@\s]+@[^@\s]+$")
    from_: str = Field(alias="from", min_length=3, pattern=r"^[^@\s]+@[^@\s]+$")
    smarthost: str = Field(pattern=r"^[^\s:]+:\d{1,5}$", description="host:port of the SMTP server")
    auth_username: Optional[str] = None
    auth_password_file: Optional[str] = Field(None, description="file holding the SMTP password")
    require_tls: bool = True


class Webhook(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(pattern=r"^https?://\S+$", description="not a secret: put tokens in bearer_token_file")
    bearer_token_file: Optional[str] = Field(None, description="file holding a bearer token, if any")


class Timing(BaseModel):
    model_config = ConfigDict(extra="forbid")
    group_wait: str = Field("30s", pattern=DURATION)
    group_interval: str = Field("5m", pattern=DURATION)
    repeat_interval: str = Field("4h", pattern=DURATION)
    # a page is repeated sooner than a mail
    critical_repeat_interval: str = Field("1h", pattern=DURATION)


class AlertingSettings(BaseModel):
    """What ``orion alerts render --config FILE`` reads: where each severity goes, no secrets."""

    model_config = ConfigDict(extra="forbid")
    pagerduty: PagerDuty
    slack: Slack
    email: Email
    webhook: Webhook
    timing: Timing = Field(default_factory=Timing)
    resolve_timeout: str = Field("5m", pattern=DURATION)


# severity → receiver; the rules' own scale first, then the names alerts.yml uses
ROUTES = (
    ("critical", "pagerduty-and-slack"),
    ("high", "slack"),
    ("medium|warning", "email"),
    ("low|info", "webhook"),
)


def alertmanager_config(s: AlertingSettings) -> dict[str, Any]:
    """The Alertmanager configuration (a dict) for ``s``."""
    pd: dict[str, Any] = {
        "routing_key_file": s.pagerduty.routing_key_file,
        "severity": "critical",
        "send_resolved": True,
    }
    if s.pagerduty.url:
        pd["url"] = s.pagerduty.url
    slack = {
        "api_url_file": s.slack.api_url_file,
        "channel": s.slack.channel,
        "send_resolved": True,
        "title": '[{{ .Status | toUpper }}] {{ .CommonLabels.alertname }} ({{ .CommonLabels.severity }})',
        "text": "{{ range .Alerts }}{{ .Annotations.summary }}\n{{ end }}",
    }
    email: dict[str, Any] = {
        "to": s.email.to,
        "from": s.email.from_,
        "smarthost": s.email.smarthost,
        "require_tls": s.email.require_tls,
        "send_resolved": True,
    }
    if s.email.auth_username:
        email["auth_username"] = s.email.auth_username
    if s.email.auth_password_file:
        email["auth_password_file"] = s.email.auth_password_file
    hook: dict[str, Any] = {"url": s.webhook.url, "send_resolved": True}
    if s.webhook.bearer_token_file:
        hook["http_config"] = {
            "authorization": {"type": "Bearer", "credentials_file": s.webhook.bearer_token_file}
        }
    t = s.timing
    routes = []
    for severity, receiver in ROUTES:
        route: dict[str, Any] = {"matchers": [f'severity=~"{severity}"'], "receiver": receiver}
        if severity == "critical":
            route["repeat_interval"] = t.critical_repeat_interval
        routes.append(route)
    lower = {"critical": "high|medium|warning|low|info", "high": "medium|warning|low|info"}
    return {
        "global": {"resolve_timeout": s.resolve_timeout},
        "route": {
            # an alert without a known severity is a rule's mistake: someone reads the mail
            "receiver": "email",
            "group_by": ["alertname", "family"],
            "group_wait": t.group_wait,
            "group_interval": t.group_interval,
            "repeat_interval": t.repeat_interval,
            "routes": routes,
        },
        "inhibit_rules": [
            {
                # family=~".+": alerts without a family (equal on a missing label is equal) are
                # never silenced by another
                "source_matchers": [f'severity="{src}"', 'family=~".+"'],
                "target_matchers": [f'severity=~"{targets}"'],
                "equal": ["family"],
            }
            for src, targets in lower.items()
        ],
        "receivers": [
            {"name": "pagerduty-and-slack", "pagerduty_configs": [pd], "slack_configs": [slack]},
            {"name": "slack", "slack_configs": [slack]},
            {"name": "email", "email_configs": [email]},
            {"name": "webhook", "webhook_configs": [hook]},
        ],
    }


HEADER = """\
# Alertmanager configuration for Orion (docs/alerting.md): critical -> PagerDuty + Slack,
# high -> Slack, medium (and alerts.yml's warning) -> email, low (and info) -> webhook.
# Generated by `orion alerts render --config alerting.yaml`; secrets are files Alertmanager reads
# (fill them with `orion alerts secrets --dir DIR` from environment variables, or by hand, mode 0600).
"""


def render_alertmanager(s: AlertingSettings) -> str:
    """The configuration's text."""
    return to_yaml(alertmanager_config(s), HEADER)


def write_secret_files(directory: str, environ: Optional[Mapping[str, str]] = None) -> dict[str, str]:
    """Write each secret found in ``environ`` (``SECRET_ENV``'s names) to its file in
    ``directory`` (created 0700, files 0600); answer ``{variable: path}`` for those written.
    Values are never printed or logged."""
    environ = os.environ if environ is None else environ
    root = Path(directory)
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    written = {}
    for var, name in SECRET_ENV.items():
        value = environ.get(var)
        if not value:
            continue
        path = root / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(value.strip())
        os.chmod(path, 0o600)  # an existing file keeps its mode through O_CREAT
        written[var] = str(path)
    return written


def example_settings(secrets_dir: str = DEFAULT_SECRETS_DIR) -> AlertingSettings:
    """The example the shipped ``alertmanager.yml`` is rendered from (addresses to replace)."""
    return AlertingSettings.model_validate(
        {
            "pagerduty": {"routing_key_file": f"{secrets_dir}/pagerduty_routing_key"},
            "slack": {"api_url_file": f"{secrets_dir}/slack_webhook_url", "channel": "#orion-alerts"},
            "email": {
                "to": "oncall@example.com",
                "from": "alertmanager@example.com",
                "smarthost": "smtp.example.com:587",
                "auth_username": "alertmanager",
                "auth_password_file": f"{secrets_dir}/smtp_password",
            },
            "webhook": {
                "url": "https://hooks.example.com/orion-alerts",
                "bearer_token_file": f"{secrets_dir}/webhook_token",
            },
        }
    )
