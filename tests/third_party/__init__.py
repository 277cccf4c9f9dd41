"""Third-party training code run unchanged through zsgjax's adapters (see each folder's README.md)."""
