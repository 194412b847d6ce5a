"""Agent definitions' rules that the API and the workers share, without I/O: soul
documents (`soul.py`)."""
