"""The pages `publisher serve` answers: one-click unsubscribe and preferences (unsubscribe.py), signed tokens (tokens.py)."""
