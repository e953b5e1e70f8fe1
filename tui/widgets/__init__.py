"""Widgets of the dashboard: summary, charts, task table, segment map, event log."""
