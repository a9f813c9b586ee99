"""Harvest in the browser: facilitators hand in notes, editors shape the themes (FastAPI, server-rendered)."""
