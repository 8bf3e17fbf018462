"""Custom search attributes (Keyword) that operators filter on in the Temporal UI and CLI."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

PROJECT_ID = SearchAttributeKey.for_keyword("ProjectId")
TASK_TYPE = SearchAttributeKey.for_keyword("TaskType")
TASK_STATUS = SearchAttributeKey.for_keyword("TaskStatus")
# Hash of the submitting API key: "my tasks" listings and per-key idempotency without storing the key.
OWNER = SearchAttributeKey.for_keyword("TaskOwner")

ALL = (PROJECT_ID, TASK_TYPE, TASK_STATUS, OWNER)
