# Fill every writable place until it is full; each must stop at its size.
for dir in /tmp /dev/shm; do
  if err=$(dd if=/dev/zero of="$dir/fill" bs=1M count=4096 2>&1); then
    echo "WROTE 4 GiB to $dir: no limit"
    exit 1
  fi
  echo "limit in $dir after $(du -m "$dir/fill" | cut -f1) MiB: $(echo "$err" | head -n 1)"
  rm -f "$dir/fill"
done
exit 3
