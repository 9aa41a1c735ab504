"""Local Kafka: topic definitions (topics.TOPICS) and helper scripts."""
