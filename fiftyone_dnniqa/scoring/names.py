"""Names of the fields a scoring run writes besides its score field (no FiftyOne import,
so the engine's inner loop runs where FiftyOne is not installed)."""


def error_field_for(field: str) -> str:
    """The field holding per-sample failure reasons for ``field``."""
    return f"{field}_error"
