# Look through /proc and /sys for the host's and other containers' processes and secrets.
found=0
n=$(ls -d /proc/[0-9]* | wc -l)
echo "processes visible: $n"
if [ "$n" -gt 8 ]; then echo "FOUND $n processes"; found=1; fi
for p in /proc/[0-9]*; do
  what="$(tr '\0' ' ' < "$p/cmdline" 2>/dev/null) $(tr '\0' ' ' < "$p/environ" 2>/dev/null)"
  case "$what" in
    *SAGE-CANARY-*|*dockerd*|*containerd*|*postgres*|*rabbitmq*|*pytest*|*python*)
      echo "FOUND $p: ${what%% *}"; found=1 ;;
  esac
done
# 5432 and 5672 are 1538 and 1628 in /proc/net/tcp: the host's listeners, if this is its netns.
if grep -qiE ':(1538|1628|2328) ' /proc/net/tcp /proc/net/tcp6 2>/dev/null; then
  echo "FOUND the host's sockets"; found=1
fi
echo "interfaces: $(ls /sys/class/net | tr '\n' ' ')"
for iface in /sys/class/net/*; do
  [ "${iface##*/}" = lo ] || { echo "FOUND interface ${iface##*/}"; found=1; }
done
if mkdir /sys/fs/cgroup/memory/escape 2>/dev/null || mkdir /sys/fs/cgroup/escape 2>/dev/null; then
  echo "WROTE a cgroup"; found=1
fi
if (echo 1 > /proc/sys/kernel/sysrq) 2>/dev/null; then echo "WROTE /proc/sys"; found=1; fi
if cat /proc/kcore > /dev/null 2>&1 && [ -s /proc/kcore ]; then echo "FOUND /proc/kcore"; found=1; fi
echo "cgroup: $(head -n 1 /proc/self/cgroup)"
exit $found
