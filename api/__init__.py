"""The FastAPI facade: maps the seed's REST contract onto workflow starts, describes and cancels."""
