"""How a run gets done: the job table (records, scheduler, worker_protocol, doctor_queries), workers, the runner
(the one door to the engine), executors, budget, policy, doctor, pace, warmup."""
