# The system's services listen on the host's loopback: none may be reachable from a test.
reached=0
for port in 5432 5672 9000 5000 8080 8081 2375 2376; do
  here=0
  for host in 127.0.0.1 ::1; do
    if nc -w 1 "$host" "$port" < /dev/null > /dev/null 2>&1; then
      echo "REACHED $host:$port"; here=1; reached=1
    fi
  done
  [ "$here" = 1 ] || echo "unreachable: $port"
done
if wget -q -T 2 -O /dev/null http://127.0.0.1:9000/ 2>/dev/null; then echo "REACHED S3"; reached=1; fi
echo "interfaces: $(ls /sys/class/net | tr '\n' ' ')"
exit $reached
