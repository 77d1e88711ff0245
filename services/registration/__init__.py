"""The registration service. Receives clients into guidance: identity, legal basis, officer assignment, address, transfers."""
