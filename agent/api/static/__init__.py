"""Static assets of the status page (a package so the wheel ships index.html via package-data)."""
