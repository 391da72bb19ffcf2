"""Human-facing output: terminal tables now; leaderboards and plots later."""
