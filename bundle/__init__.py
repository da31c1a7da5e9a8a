"""The bundle format shared by the exporter and the runtime (standard library only)."""
