"""How a run gets done: the job table, workers, the runner (the one door to the engine), executors, budget, policy, doctor, latency."""
