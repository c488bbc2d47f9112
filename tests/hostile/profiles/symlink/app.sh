# /escape is a symlink to /: whatever it leads to must be this container's own root.
found=0
for path in /escape/etc/shadow /escape/var/run/docker.sock /escape/run/docker.sock \
    /escape/proc/1/root/var/run/docker.sock /escape/sys/fs/cgroup/sage-profiler \
    /escape/home /escape/root /escape/usr /escape/var; do
  if [ -e "$path" ]; then echo "FOUND $path"; found=1; fi
done
if [ -n "$CANARY" ]; then
  for path in "/escape$CANARY" "/escape/proc/1/root$CANARY"; do
    if [ -e "$path" ]; then echo "FOUND $path: $(cat "$path")"; found=1; fi
  done
fi
if (echo x > /escape/escaped) 2>/dev/null; then echo "WROTE /escape/escaped"; found=1; fi
echo "root holds: $(ls /escape | tr '\n' ' ')"
exit $found
