"""Push: the partner-facing API that accepts, records and publishes pushes."""
