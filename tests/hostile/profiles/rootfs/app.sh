# Try to change the image's own file system, the files Docker adds, and to mount over them.
wrote=0
for path in /evil /bin/evil /app.sh /etc/hosts /etc/resolv.conf /etc/hostname; do
  if (echo x >> "$path") 2>/dev/null; then echo "WROTE $path"; wrote=1; else echo "read-only: $path"; fi
done
if mkdir /mnt 2>/dev/null || mount -t tmpfs none /bin 2>/dev/null; then
  echo "WROTE a mount"; wrote=1
fi
exit $wrote
