"""Next-location prediction from check-in sequences (task ``next-location``)."""
