"""The CLI's command groups, one module each (`avsev <group> …`); `avsev_tools.cli` assembles them."""
