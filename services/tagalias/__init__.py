"""TagAlias: device tags and aliases per app in a Redis Cluster, and audience resolution."""
