"""DBAgent: the only pushgrid process that talks to MySQL; it exposes named operations only."""
