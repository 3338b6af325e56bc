"""When to fetch and send: `due.py` decides (pure), `facts.py` reads what the store says, `runner.py` acts."""
