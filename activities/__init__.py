"""Activities: all I/O of the task service (models, LLM calls, storage, webhooks)."""
