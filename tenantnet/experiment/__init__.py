"""Experiments of the paper's section IV: reachability time and bandwidth, DNB vs CNB.

Modules: spec (experiment YAML), prober (raw-socket ICMP prober), reachability (the
sub-experiments), stats (the eight-field records), runner (the whole run), results (the
results directory), cli (`tenantnet experiment ...`). bandwidth, baseline, plots and report
are the throughput and presentation parts."""
