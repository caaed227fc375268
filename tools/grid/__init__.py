"""Local grid bring-up: the backends (MariaDB, Redis Cluster, Kafka broker) and IceGrid, on loopback."""
