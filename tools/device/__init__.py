"""Device-side tools: the Python device SDK, the many-device simulator and the web device page."""
