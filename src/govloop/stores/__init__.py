"""Stores: SQL (the system of record) and Redis (fast, disposable state)."""
