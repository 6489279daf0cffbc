"""`tenantnet bench`: tenantnet measured side by side with Open vSwitch's own tools, on
throwaway switches it makes and removes itself (names start with `tnbench-`)."""
