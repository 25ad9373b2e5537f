"""Policies: anything that maps observations to actions (scripted experts now; the VLA and adapters later)."""
