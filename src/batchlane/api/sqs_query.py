"""The SQS query protocol (botocore before 1.31.64, other SDKs' older releases): form fields in, XML out.

``params_from_query`` turns flattened form fields (``AttributeName.1``, ``MessageAttribute.1.Name``,
``SendMessageBatchRequestEntry.1.Id``, …) into the JSON protocol's shapes so ``sqs.SqsApi`` serves both protocols with
one implementation; ``result_xml`` renders an action's result as the query protocol's ``<ActionResponse>`` (batch
results as ``<…ResultEntry>`` and ``<BatchResultErrorEntry>`` elements).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from xml.etree import ElementTree

from batchlane.api.sqs_errors import invalid_parameter

_INT_PARAMS = frozenset(
    {"DelaySeconds", "MaxNumberOfMessages", "VisibilityTimeout", "WaitTimeSeconds", "MaxResults"}
)
_LIST_PARAMS = {
    "AttributeName": "AttributeNames",
    "MessageAttributeName": "MessageAttributeNames",
    "MessageSystemAttributeName": "MessageSystemAttributeNames",
}
# The query protocol's names for the Entries of each batch action (``SendMessageBatchRequestEntry.1.Id``, …).
_BATCH_ENTRIES = (
    "SendMessageBatchRequestEntry",
    "DeleteMessageBatchRequestEntry",
    "ChangeMessageVisibilityBatchRequestEntry",
)
_INDEXED = re.compile(r"(?P<prefix>[A-Za-z]+)\.(?P<index>\d+)(?:\.(?P<rest>.+))?")


# The element of each batch action's Successful entries in its XML answer.
_BATCH_RESULT_ENTRIES = {
    "SendMessageBatch": "SendMessageBatchResultEntry",
    "DeleteMessageBatch": "DeleteMessageBatchResultEntry",
    "ChangeMessageVisibilityBatch": "ChangeMessageVisibilityBatchResultEntry",
}


def params_from_query(pairs: Iterable[tuple[str, str]]) -> tuple[str, dict[str, Any]]:
    """(Action, JSON-shaped parameters) from query-protocol form fields (``AttributeName.1``, ``MessageAttribute.1.
    Name``, ``MessageAttribute.1.Value.StringValue``, ``Attribute.1.Name``/``.Value``,
    ``SendMessageBatchRequestEntry.1.Id``, …)."""
    flat: dict[str, str] = {}
    for key, value in pairs:
        flat[key] = value
    action = flat.pop("Action", "")
    flat.pop("Version", None)
    return action, _params(flat)


def _params(flat: Mapping[str, str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    lists: dict[str, dict[int, str]] = {}
    maps: dict[str, dict[int, dict[str, str]]] = {}
    for key, value in flat.items():
        match = _INDEXED.fullmatch(key)
        if match is None:
            if key in _INT_PARAMS:
                try:
                    params[key] = int(value)
                except ValueError:
                    raise invalid_parameter(
                        f"Value {value!r} for parameter {key} is invalid: not an integer"
                    ) from None
            else:
                params[key] = value
            continue
        prefix, index, rest = match["prefix"], int(match["index"]), match["rest"]
        if prefix in _LIST_PARAMS and rest is None:
            lists.setdefault(_LIST_PARAMS[prefix], {})[index] = value
        elif prefix in ("MessageAttribute", "Attribute", *_BATCH_ENTRIES) and rest:
            maps.setdefault(prefix, {}).setdefault(index, {})[rest] = value
    for name, items in lists.items():
        params[name] = [items[i] for i in sorted(items)]
    for index, entry in sorted(maps.get("MessageAttribute", {}).items()):
        name = entry.get("Name")
        if not name:
            raise invalid_parameter(f"MessageAttribute.{index}.Name is required")
        params.setdefault("MessageAttributes", {})[name] = {
            key.removeprefix("Value."): val for key, val in entry.items() if key.startswith("Value.")
        }
    for index, entry in sorted(maps.get("Attribute", {}).items()):
        if "Name" not in entry or "Value" not in entry:
            raise invalid_parameter(f"Attribute.{index} needs a Name and a Value")
        params.setdefault("Attributes", {})[entry["Name"]] = entry["Value"]
    for prefix in _BATCH_ENTRIES:
        if prefix in maps:  # each entry's fields are flattened like a request's own
            params["Entries"] = [_params(entry) for _, entry in sorted(maps[prefix].items())]
    return params


def result_xml(action: str, result: Mapping[str, Any]) -> ElementTree.Element:
    """The query protocol's ``<ActionResponse>`` for ``result`` (ResponseMetadata is added by the caller)."""
    root = ElementTree.Element(f"{action}Response")
    if action in ("DeleteMessage", "ChangeMessageVisibility", "PurgeQueue"):
        return root
    node = ElementTree.SubElement(root, f"{action}Result")

    def text(parent: ElementTree.Element, tag: str, value: Any) -> None:
        ElementTree.SubElement(parent, tag).text = str(value)

    def pairs(parent: ElementTree.Element, tag: str, values: Mapping[str, str]) -> None:
        for name, value in values.items():
            item = ElementTree.SubElement(parent, tag)
            text(item, "Name", name)
            text(item, "Value", value)

    if action in ("GetQueueUrl", "CreateQueue"):
        text(node, "QueueUrl", result["QueueUrl"])
    elif action == "ListQueues":
        for url in result.get("QueueUrls", []):
            text(node, "QueueUrl", url)
    elif action == "SendMessage":
        for key in ("MessageId", "MD5OfMessageBody", "MD5OfMessageAttributes"):
            if key in result:
                text(node, key, result[key])
    elif action in _BATCH_RESULT_ENTRIES:
        for entry in result.get("Successful", []):
            item = ElementTree.SubElement(node, _BATCH_RESULT_ENTRIES[action])
            for key, value in entry.items():
                text(item, key, value)
        for entry in result.get("Failed", []):
            item = ElementTree.SubElement(node, "BatchResultErrorEntry")
            for key, value in entry.items():
                text(item, key, str(value).lower() if isinstance(value, bool) else value)
    elif action == "GetQueueAttributes":
        pairs(node, "Attribute", result.get("Attributes", {}))
    elif action == "ReceiveMessage":
        for message in result.get("Messages", []):
            item = ElementTree.SubElement(node, "Message")
            for key in ("MessageId", "ReceiptHandle", "MD5OfBody", "Body"):
                text(item, key, message[key])
            pairs(item, "Attribute", message.get("Attributes", {}))
            if "MD5OfMessageAttributes" in message:
                text(item, "MD5OfMessageAttributes", message["MD5OfMessageAttributes"])
            for name, value in message.get("MessageAttributes", {}).items():
                attribute = ElementTree.SubElement(item, "MessageAttribute")
                text(attribute, "Name", name)
                inner = ElementTree.SubElement(attribute, "Value")
                text(inner, "StringValue", value["StringValue"])
                text(inner, "DataType", value["DataType"])
    return root
