"""Check-in data: adapters into `EventLog`, filters and sessions (`Sessions`)."""
