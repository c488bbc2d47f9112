# Never ends, and ignores the polite signals: only the profiler's timeout (a SIGKILL) stops it.
trap '' TERM INT HUP
echo "waiting forever"
while :; do sleep 1; done
