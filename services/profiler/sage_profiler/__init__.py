"""The profiler: runs each built image's tests under limits and measures them."""
