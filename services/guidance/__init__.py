"""The guidance service. The three-stage guidance path: litmas, TPP decisions, programs, sessions, closure."""
