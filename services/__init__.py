"""pushgrid's Ice services: one sub-package per service plus `common`, the library they share."""
