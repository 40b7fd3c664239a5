"""Notifications to accounts: webhook delivery and the checks on where it may go."""
