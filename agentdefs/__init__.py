"""Agent definitions' rules that the API and the workers share, without I/O: soul
documents (`soul.py`) and the permission rule of spawning (`permissions.py`)."""
