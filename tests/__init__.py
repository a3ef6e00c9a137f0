"""The tests, by kind: unit, integration and system (each folder says what goes there)."""
