"""One small workflow per tenant that holds its webhook secret's generation: rotations are its updates.

Its memo (`SecretGeneration`, numbers and a time, never a secret) is what the API and the delivery
activity read with `describe()`; no second store, and every replica sees the same state.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from taskservice.timefmt import iso_z
    from taskservice.webhook_secrets import SECRET_MEMO, RotateSecret, SecretGeneration

# Continue-as-new after this many rotations (the state is carried over whole).
ROTATIONS_PER_RUN = 500


@workflow.defn(name="WebhookSecretWorkflow")
class WebhookSecretWorkflow:
    def __init__(self) -> None:
        self._state = SecretGeneration()
        self._rotations = 0

    @workflow.run
    async def run(self, state: SecretGeneration | None = None) -> None:
        if state is not None:
            self._state = state
            workflow.upsert_memo({SECRET_MEMO: state})
        await workflow.wait_condition(
            lambda: self._rotations >= ROTATIONS_PER_RUN or workflow.info().is_continue_as_new_suggested()
        )
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(self._state)

    @workflow.update
    def rotate(self, request: RotateSecret) -> SecretGeneration:
        """A new generation; the one before keeps signing for the overlap."""
        until = workflow.now() + timedelta(hours=request.overlap_hours)
        self._state = SecretGeneration(
            generation=self._state.generation + 1,
            previous_generation=self._state.generation,
            previous_until=iso_z(until),
        )
        self._rotations += 1
        workflow.upsert_memo({SECRET_MEMO: self._state})
        return self._state
