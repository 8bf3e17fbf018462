"""Server-Sent Events of a task (``GET /api/v1/tasks/{id}/events``): parsing, and telling a live stream from
a server that has none. Pure functions of lines and answers: both transports use them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import httpx

from taskservice_client.models import TaskStatus

# Answers of the events URL that mean "this server has no event stream": fall back to polling.
NO_STREAM_STATUS = (404, 405, 406, 501)


@dataclass
class ServerSentEvent:
    event: str = "message"
    data: str = ""
    id: str | None = None


@dataclass
class EventStreamParser:
    """Incremental text/event-stream parser (WHATWG rules: ``data`` lines join with newlines, a blank line
    dispatches, lines starting with ``:`` are comments)."""

    retry_ms: int | None = None
    _event: str = ""
    _data: list[str] = field(default_factory=list)
    _id: str | None = None

    def feed(self, line: str) -> ServerSentEvent | None:
        if line == "":
            if not self._data:
                self._event = ""
                return None
            event = ServerSentEvent(event=self._event or "message", data="\n".join(self._data), id=self._id)
            self._event, self._data = "", []
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            self._id = value
        elif name == "retry" and value.isdigit():
            self.retry_ms = int(value)
        return None


def status_from_event(event: ServerSentEvent) -> TaskStatus | None:
    """A task status from an event whose data is the /status JSON; None for keep-alives and other events."""
    try:
        data = json.loads(event.data)
    except ValueError:
        return None
    if not isinstance(data, dict) or "status" not in data or "task_id" not in data:
        return None
    return TaskStatus.model_validate(data)


def is_event_stream(response: httpx.Response) -> bool:
    content_type = str(response.headers.get("content-type", ""))
    return content_type.split(";")[0].strip().lower() == "text/event-stream"


def is_live_event_stream(response: httpx.Response) -> bool:
    """True when the events URL answered with a stream to read line by line (else its body is an answer)."""
    return response.is_success and is_event_stream(response)


def stream_missing(response: httpx.Response) -> bool:
    """True when the events URL does not exist on this server (as opposed to: the task does not exist)."""
    if response.status_code == 200:
        return not is_event_stream(response)
    if response.status_code not in NO_STREAM_STATUS:
        return False
    try:
        body = response.json()
    except ValueError:
        return True
    return not (isinstance(body, dict) and body.get("error") == "task_not_found")
