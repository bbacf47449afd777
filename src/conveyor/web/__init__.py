"""The REST API and the dashboard (a later issue fills this folder). Imports
the core; the core never imports it."""
