"""Serving simulator: request-level discrete-event simulation of LLM serving."""
