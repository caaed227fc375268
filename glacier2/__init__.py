"""The partners' door: Glacier2's permissions verifier and session manager (README.md)."""
