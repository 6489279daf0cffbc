"""The one-machine lab: emulated compute and network nodes as network namespaces."""
