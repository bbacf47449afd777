"""Metrics, health and alerts (a later issue fills this folder). Imports the
core; the core never imports it."""
