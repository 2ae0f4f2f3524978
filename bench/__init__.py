"""Benchmarks of fleet on this machine: real etcd, real systemd test hosts.

Run them all with ``python -m bench``; see bench/__main__.py for the options.
"""
