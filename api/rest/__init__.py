"""The REST surface: routes, request/response schemas, rendering, OpenAPI, header parsing."""
