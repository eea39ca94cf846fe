"""Local fakes of external services, speaking their real wire protocols, for offline tests."""
