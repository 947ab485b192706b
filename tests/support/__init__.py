"""What tests of every layer share: paths, keys, a Redis server we own, a controller process,
report builders. Free ports come from ``slicetwin.ops.procs.free_port`` (one implementation)."""
