"""Everything that talks to Kafka: clients, the scoring loop, training input, simulator, broker."""
