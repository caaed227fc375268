"""The small library every pushgrid service and tool shares: contract, config, Ice, storage."""
