"""The cloud-config processor: turn a bare host into a fleet cluster member.

A cloud-config is a YAML file that starts with ``#cloud-config``. Each
top-level key, and each key under ``coreos``, has its own module here that
reads it into steps of a plan. ``document.read`` validates the whole file
first, then ``apply.apply_plan`` carries the plan out, so a file with any
error changes nothing on the host.
"""
