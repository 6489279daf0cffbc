"""A node VM: a QEMU VM of this lab running Debian with kernel-datapath Open vSwitch,
booted and provisioned by tenantnet.lab.vmnodes, then reached over SSH from the fabric
namespace like a host node. Its QEMU is one of the lab's processes (ended by pid before
the nodes are torn down); its endpoints live inside it and go with it; its disk (the
qcow2 overlay under vm_dir) is the lab's to remove."""

import contextlib
import dataclasses
import os
import shutil

from tenantnet.lab.nodes.host import HostNode


class VmNode(HostNode):
    kind = "vm"
    endpoints_go_with_node = True

    def remove_files(self):
        vm_dir = self.rec.vm.vm_dir if self.rec.vm else None
        if vm_dir and os.path.isdir(vm_dir):
            shutil.rmtree(vm_dir, ignore_errors=True)
            with contextlib.suppress(OSError):     # the lab's folder, once empty
                os.rmdir(os.path.dirname(vm_dir))

    def status(self):
        out = super().status()
        if self.rec.vm:
            out.update(dataclasses.asdict(self.rec.vm))
        return out
