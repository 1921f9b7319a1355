"""The CLI's command groups, one module each (`avsev <group> …`); `avsev.cli` assembles them."""
