"""Helpers that every package may use and that know nothing of the desk or its adapters:
background workers and logging setup."""
