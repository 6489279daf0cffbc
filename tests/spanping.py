"""A ping that must span a fault window: `ping -D -i 0.01` from a lab endpoint until
stopped, then checked: the first reply came before the fault, the last one after the
recovery, and every echo in between was answered (icmp_seq has no gap)."""

import re
import signal
import subprocess

REPLY = re.compile(r"^\[(\d+\.\d+)\] \d+ bytes from .*icmp_seq=(\d+)", re.M)


class Pinger:
    def __init__(self, lab, src, ip, interval=0.01):
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", lab.fabric.endpoint_netns(src), "ping", "-n", "-D",
             "-i", str(interval), ip], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True)
        self.out = ""

    def stop(self):
        """SIGINT; then first/last (epoch of the first and last replies) and seqs."""
        self.proc.send_signal(signal.SIGINT)
        self.out, _ = self.proc.communicate(timeout=30)
        replies = [(float(t), int(s)) for t, s in REPLY.findall(self.out)]
        assert replies, self.out[-2000:]
        self.first, self.last = replies[0][0], replies[-1][0]
        self.seqs = sorted(s for _, s in replies)
        return self

    def assert_spans(self, before, after):
        """Replies from before *before* to after *after* (epoch seconds), none lost."""
        assert self.first < before, f"first reply {self.first} not before the fault {before}"
        assert self.last > after, f"last reply {self.last} not after the recovery {after}"
        assert self.seqs[0] == 1, f"the first echoes were lost: first answered {self.seqs[0]}"
        missing = sorted(set(range(1, self.seqs[-1] + 1)) - set(self.seqs))
        assert not missing, f"{len(missing)} echoes lost (icmp_seq {missing[:10]})"
        return self
