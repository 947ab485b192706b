"""Start-up errors of the services' settings (pydantic-settings), one line per bad variable."""

from __future__ import annotations


def settings_error(e: Exception, prefix: str = "SLICETWIN_") -> str:
    """One line per invalid setting, by its environment name, for a start-up error."""
    errors = getattr(e, "errors", None)
    if errors is None:
        return str(e)
    lines = []
    for err in errors(include_url=False):
        loc = ".".join(str(p) for p in err.get("loc", ()))
        name = f"{prefix}{loc.upper()}" if loc else "settings"
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        secret = any(w in name for w in ("KEY", "PASSWORD", "TOKEN"))
        shown = "<hidden>" if secret else repr(err.get("input"))
        lines.append(f"{name}={shown}: {msg}" if loc else f"{name}: {msg}")
    return "invalid settings:\n  " + "\n  ".join(lines)
