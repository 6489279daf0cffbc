"""Experiments of the paper's section IV: reachability time and bandwidth, DNB vs CNB.

Modules: spec (experiment YAML), prober (raw-socket ICMP prober), reachability (the
sub-experiments), stats (the eight-field records), runner (the whole run), results (the
results directory), cli (`tenantnet experiment ...`). bandwidth, baseline, plots and report
are the throughput and presentation parts."""

# The lab prefix an experiment builds its labs under (`experiment run --prefix`). Here, not in
# runner, so that building the `tenantnet` command line imports nothing of the experiment
# (runner pulls in the model and networkx: seconds inside a TCG node VM).
DEFAULT_PREFIX = "tnexp"
