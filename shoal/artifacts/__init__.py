"""What training leaves behind: the bundle (safetensors + JSON) and the registry of runs (SQLite)."""
