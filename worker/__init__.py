"""Workers: receive runs, claim them, execute agents, record the outcome."""
