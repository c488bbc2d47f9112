# Every shell starts two more, forever: only the pids limit stops it, and the timeout ends it.
bomb() { bomb | bomb & }
bomb
while :; do sleep 1; done
