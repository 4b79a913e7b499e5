"""`make chaos`: the service under devhost on a simulated clock, killed with SIGKILL at seeded random moments
(mid-check, mid-retrain, mid-deploy, mid-publish) and restarted, with a workload of checks, drift, retrains and
canaries; then drained, and its invariants read from the stores. See chaos/__main__.py.

    world.py       the workspace: monitor specs, reference data, retrain settings, host.json, the clock file
    traffic.py     the endpoints' traffic, written as the local endpoint would, following the traffic split
    host.py        the devhost process (start, SIGKILL, stop) and the simulated clock it reads
    probe.py       what the stores say right now: which moment a kill lands in, whether the service is idle
    invariants.py  what must hold after the drain, checked from the stores
"""
