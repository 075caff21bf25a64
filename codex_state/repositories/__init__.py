"""Repositories: each takes a `Session`, runs its statements, and never commits."""
