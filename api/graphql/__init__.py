"""Seed 003's GraphQL API (see api/graphql/schema.py)."""
