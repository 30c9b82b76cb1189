"""Customers' clusters: reservations, status changes, the command outbox, the driver
that moves clusters to their wanted state, and accounting (docs/clusters.md)."""
