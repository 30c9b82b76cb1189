"""Scheduled jobs of the coordinator, one per module. Each is safe to run on every
replica at once: they only delete what has expired, so running twice changes nothing."""
