"""The settings of webhook delivery and signing: part of Settings, declared apart."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from taskservice.credential_formats import comma_separated, decode_webhook_secret


class WebhookSettings(BaseSettings):
    """The master secret each tenant's webhook secret is derived from, and how deliveries are sent."""

    model_config = SettingsConfigDict(
        env_file=None, extra="ignore", case_sensitive=False, hide_input_in_errors=True
    )

    webhook_secret: SecretStr | None = Field(
        None,
        description="Master secret (`whsec_` + base64 of 24–64 bytes) each tenant's own webhook secret is "
        "derived from; receivers never hold it. Comma-separated (rotation of the master): each adds a `v1,` "
        "signature. Empty: unsigned (refused in production unless WEBHOOK_SIGNING=off).",
    )
    webhook_signing: Literal["on", "off"] | None = Field(
        None, description="`off`: send webhooks unsigned (production requires saying so); unset: on with "
        "WEBHOOK_SECRET.",
    )  # fmt: skip
    webhook_rotation_hours: float = Field(
        24.0, gt=0, description="After a tenant rotates its webhook secret, deliveries carry the old "
        "secret's signature beside the new one's this long.",
    )  # fmt: skip
    webhook_allow_private: bool = Field(
        False, description="Allow callback URLs that resolve to private or loopback addresses."
    )
    webhook_timeout_s: float = Field(30.0, description="Timeout of one webhook delivery attempt, seconds.")
    webhook_connect_timeout_s: float = Field(
        5.0, gt=0, description="Timeout of connecting to a webhook receiver, seconds."
    )
    webhook_concurrency: int = Field(
        100, ge=1, description="Webhook deliveries in flight at once per worker process (own task queue)."
    )
    webhook_host_concurrency: int = Field(
        8, ge=1, description="Deliveries in flight at once to one receiver host per worker process; one "
        "more is a failed attempt (`receiver busy`), retried as any other.",
    )  # fmt: skip
    webhook_retry_hours: float = Field(
        0.0, ge=0, description="After the seed's 4 attempts, keep retrying a failed final webhook this long "
        "(backoff 1 min doubling to 1 h; 0: the seed's behaviour). The task's status is final meanwhile.",
    )  # fmt: skip
    webhook_include_traceback: bool = Field(
        True, description="Failure webhooks carry `traceback` (project-relative paths only); `false`: null."
    )

    @field_validator("webhook_secret", "webhook_signing", mode="before")
    @classmethod
    def _empty_means_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_secrets_are_well_formed(cls, value: SecretStr | None) -> SecretStr | None:
        parts = [] if value is None else comma_separated(value)
        for index, part in enumerate(parts):
            where = "WEBHOOK_SECRET" if len(parts) == 1 else f"WEBHOOK_SECRET (secret {index + 1})"
            decode_webhook_secret(part, where)
        return value if parts else None

    @model_validator(mode="after")
    def _signing_is_consistent(self) -> WebhookSettings:
        if self.webhook_signing == "on" and self.webhook_secret is None:
            raise ValueError("WEBHOOK_SIGNING=on requires WEBHOOK_SECRET")
        if self.webhook_signing == "off" and self.webhook_secret is not None:
            raise ValueError("WEBHOOK_SIGNING is off, yet WEBHOOK_SECRET is set: remove one or the other")
        return self

    def webhook_signing_keys(self) -> list[bytes]:
        """Master keys of WEBHOOK_SECRET, in the order given (empty: deliveries are not signed)."""
        if self.webhook_secret is None:
            return []
        parts = comma_separated(self.webhook_secret)
        return [decode_webhook_secret(part, "WEBHOOK_SECRET") for part in parts]
