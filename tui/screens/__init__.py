"""Screens of the dashboard: main, task detail, help and the dialogs."""
