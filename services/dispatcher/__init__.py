"""Dispatcher workers: take tasks from Kafka and fan messages out through TagAlias, Redis and STC."""
