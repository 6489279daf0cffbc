"""Node VMs: the Debian image the nodes boot (image), QEMU processes (qemu), and pushing
tenantnet's source into a running VM (source)."""
