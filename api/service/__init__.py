"""The service layer: every operation and its rules, for every surface (REST, GraphQL, Socket.IO, streams)."""
