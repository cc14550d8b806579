"""`jobplane`: the operators' command line over the gateway's API (and Kafka for `tail`)."""
