"""Run the cluster command as `python -m fleetd.cluster`."""

from fleetd.cluster.cli import main

main(prog_name="fleet-cluster")
