"""Alerts on violations: POST the report to a webhook (httpx) and publish it to an SNS topic (boto3).

An alert never changes an execution's outcome: each channel's result (``webhook: 200``, ``sns: <MessageId>`` or
the error) is recorded on the execution, and failures are logged.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)

WEBHOOK_TIMEOUT_S = 10.0
WEBHOOK_ATTEMPTS = 3
# SNS caps a message at 256 KiB; a long violation list is cut, the full report stays at its URI.
SNS_MAX_BYTES = 256 * 1024
SNS_SUBJECT_CHARS = 100


def post_webhook(url: str, payload: Mapping[str, Any], *, attempts: int = WEBHOOK_ATTEMPTS) -> str:
    """POST ``payload`` as JSON to ``url``; retried on connection errors and 5xx. Returns ``webhook: <status>``
    or ``webhook failed: <why>``."""
    import httpx

    why = "not tried"
    for attempt in range(attempts):
        try:
            answer = httpx.post(url, json=payload, timeout=WEBHOOK_TIMEOUT_S)
        except httpx.HTTPError as exc:
            why = f"{type(exc).__name__}: {exc}"
        else:
            if answer.status_code < 500:
                if answer.status_code >= 400:
                    log.warning("webhook %s answered %d", url, answer.status_code)
                return f"webhook: {answer.status_code}"
            why = f"HTTP {answer.status_code}"
        if attempt + 1 < attempts:
            time.sleep(0.5 * 2**attempt)
    log.warning("webhook %s failed: %s", url, why)
    return f"webhook failed: {why}"


def publish_sns(topic_arn: str, payload: Mapping[str, Any]) -> str:
    """Publish ``payload`` as JSON to ``topic_arn`` (region from the ARN; endpoint and credentials as boto3 finds
    them, e.g. ``AWS_ENDPOINT_URL_SNS``). Returns ``sns: <MessageId>`` or ``sns failed: <why>``."""
    try:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:
        return "sns failed: boto3 is not installed (pip install 'batchlane[aws]')"
    parts = topic_arn.split(":")
    region = parts[3] if len(parts) > 5 and parts[3] else None
    message = json.dumps(payload)
    if len(message.encode()) > SNS_MAX_BYTES:
        message = json.dumps({**payload, "violations": None, "truncated": True})
    subject = f"batchlane drift: {payload.get('schedule', '')}"[:SNS_SUBJECT_CHARS]
    try:
        client = boto3.client("sns", region_name=region)
        answer = client.publish(TopicArn=topic_arn, Message=message, Subject=subject)
    except (BotoCoreError, ClientError) as exc:
        log.warning("SNS publish to %s failed: %s", topic_arn, exc)
        return f"sns failed: {exc}"
    return f"sns: {answer['MessageId']}"


def send_alerts(payload: Mapping[str, Any], *, webhook: str | None, sns_topic: str | None) -> str | None:
    """Send ``payload`` to each configured channel; the results joined with ``; `` (None when none is set)."""
    results = []
    if webhook:
        results.append(post_webhook(webhook, payload))
    if sns_topic:
        results.append(publish_sns(sns_topic, payload))
    return "; ".join(results) or None
