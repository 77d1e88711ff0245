"""The notification service. Agency subscriptions, signed deliveries, the agency feed, officer e-mail."""
