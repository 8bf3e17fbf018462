"""Task priority: seed 001's 1/2/3 and seed 003's names, onto Temporal priority keys (1 runs first)."""

from __future__ import annotations

from enum import StrEnum

# Every refusal names both forms a priority may take.
ACCEPTED = "priority must be 1 (high), 2 (normal), 3 (low) or LOW|NORMAL|HIGH|URGENT"


class TaskPriority(StrEnum):
    URGENT = "URGENT"
    HIGH = "HIGH"
    NORMAL = "NORMAL"
    LOW = "LOW"

    @property
    def temporal_key(self) -> int:
        return {"URGENT": 1, "HIGH": 2, "NORMAL": 3, "LOW": 4}[self.value]

    @classmethod
    def parse(cls, value: object) -> TaskPriority:
        """1/2/3 (seed 001: high/normal/low) or a name (seed 003), case-insensitive."""
        if isinstance(value, TaskPriority):
            return value
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValueError(ACCEPTED)
        if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
            number = int(value)
            if number not in SEED_NUMBERS:
                raise ValueError(ACCEPTED)
            return SEED_NUMBERS[number]
        try:
            return cls(value.upper())
        except ValueError:
            raise ValueError(ACCEPTED) from None


SEED_NUMBERS = {1: TaskPriority.HIGH, 2: TaskPriority.NORMAL, 3: TaskPriority.LOW}


def tenant_max_priorities(text: str | None) -> dict[str, TaskPriority]:
    """TENANT_MAX_PRIORITY (`tenant=PRIORITY` pairs, `*` for every tenant) as {tenant: the highest priority
    it may ask for}; a malformed entry is a ValueError naming its position."""
    found: dict[str, TaskPriority] = {}
    for number, item in enumerate((i.strip() for i in (text or "").split(",")), start=1):
        tenant, _, name = item.partition("=")
        if not item:
            continue
        try:
            found[tenant.strip()] = TaskPriority(name.strip().upper())
        except ValueError:
            raise ValueError(
                f"TENANT_MAX_PRIORITY entry {number} must be tenant=LOW|NORMAL|HIGH|URGENT"
            ) from None
    return found


def allowed(priority: TaskPriority, highest: TaskPriority) -> bool:
    """Whether `priority` is at most `highest` (URGENT > HIGH > NORMAL > LOW)."""
    return priority.temporal_key >= highest.temporal_key
