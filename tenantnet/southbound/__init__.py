"""Southbound: make the switches hold the desired state.

ovsdb (ovsdbapp transactions against a node's Open vSwitch database), ofctl (flow data
-> OpenFlow 1.3 messages, the sync plan) and ofswitch (connected datapaths, dumps,
bundles). Nothing here decides what should exist."""
